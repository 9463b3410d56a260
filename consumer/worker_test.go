package consumer

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/internal/fhirserver"
	"fhirlake/notification"
	"fhirlake/synth"
)

// idOnly is an R5 id-only notification for Type/id at version v (empty:
// unversioned).
func idOnly(base, typ, id, v string) []byte {
	focus := base + "/" + typ + "/" + id
	if v != "" {
		focus += "/_history/" + v
	}
	return []byte(`{"resourceType":"Bundle","type":"subscription-notification","entry":[{"fullUrl":"urn:uuid:s","resource":{"resourceType":"SubscriptionStatus","type":"event-notification","status":"active","notificationEvent":[{"eventNumber":"1","focus":{"reference":"` +
		focus + `"}}]}},{"fullUrl":"` + base + "/" + typ + "/" + id + `","request":{"method":"PUT","url":"` + typ + "/" + id + `"}}]}`)
}

// TestWorkerDeadLettersAndFetch drives routing, id-only fetching and their
// failures through a running consumer and checks where every record went.
func TestWorkerDeadLettersAndFetch(t *testing.T) {
	srv := fhirserver.New(fhirserver.Options{Token: "s3cret"})
	defer srv.Close()
	for _, r := range []string{
		`{"resourceType":"Patient","id":"p1","meta":{"versionId":"1"},"gender":"female"}`,
		`{"resourceType":"Patient","id":"p1","meta":{"versionId":"2"},"gender":"male"}`,
		`{"resourceType":"Patient","id":"p2","meta":{"versionId":"1"},"gender":"other"}`,
		`{"resourceType":"Patient","id":"gone","meta":{"versionId":"1"}}`,
	} {
		if _, err := srv.Add([]byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	srv.Delete("Patient", "gone")
	srv.Respond("/Patient/wrong", 200, []byte(`{"resourceType":"Patient","id":"not-wrong"}`))

	opts := synth.DefaultOptions()
	opts.Tenants = []string{"acme", "globex"}
	h := newHarness(t, opts)
	fetcher, err := notification.NewFetcher(notification.FetchOptions{MaxRetries: 1, InitialBackoff: time.Millisecond, Client: srv.Client()}, map[string]notification.FetchTarget{"acme": {BaseURL: srv.URL, Token: "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c := h.consumerWith(reg, opts.Tenants, func(o *Options) {
		o.Fetcher = fetcher
		o.Routing = RouteOptions{Header: "fhir-tenant", Topics: map[string]string{}, BaseURLPattern: regexp.MustCompile(`^https://fhir\.(?P<tenant>[a-z0-9-]+)\.example\.org/`)}
	})
	hdr := func(tenant string) []kgo.RecordHeader {
		return []kgo.RecordHeader{{Key: "fhir-tenant", Value: []byte(tenant)}}
	}
	acmeBase := "https://fhir.acme.example.org/fhir"
	records := []struct {
		name    string
		rec     *kgo.Record
		dlClass string // "" when it must become a row
	}{
		{"versioned id-only read", &kgo.Record{Key: []byte("Patient/p1"), Value: idOnly(acmeBase, "Patient", "p1", "1"), Headers: hdr("acme")}, ""},
		{"unversioned id-only read", &kgo.Record{Key: []byte("Patient/p2"), Value: idOnly(acmeBase, "Patient", "p2", ""), Headers: hdr("acme")}, ""},
		{"gone becomes a delete", &kgo.Record{Key: []byte("Patient/gone"), Value: idOnly(acmeBase, "Patient", "gone", ""), Headers: hdr("acme")}, ""},
		{"wrong resource served", &kgo.Record{Key: []byte("Patient/wrong"), Value: idOnly(acmeBase, "Patient", "wrong", ""), Headers: hdr("acme")}, "fetch_invalid"},
		{"tenant without FHIR server", &kgo.Record{Key: []byte("Patient/x"), Value: idOnly("https://fhir.globex.example.org/fhir", "Patient", "x", ""), Headers: hdr("globex")}, "id_only"},
		{"base URL contradicts header", &kgo.Record{Key: []byte("Patient/p1"), Value: idOnly("https://fhir.globex.example.org/fhir", "Patient", "p1", ""), Headers: hdr("acme")}, "conflicting_tenants"},
		{"unknown tenant", &kgo.Record{Key: []byte("Patient/p1"), Value: idOnly(acmeBase, "Patient", "p1", ""), Headers: hdr("initech")}, "conflicting_tenants"},
		{"no tenant at all", &kgo.Record{Key: []byte("Patient/p1"), Value: idOnly("https://other.example.com/fhir", "Patient", "p1", "")}, "no_tenant"},
		{"malformed", &kgo.Record{Key: []byte("x"), Value: []byte(`{"resourceType":`), Headers: hdr("acme")}, "malformed"},
		{"unknown tenant by header only", &kgo.Record{Key: []byte("x"), Value: idOnly("https://other.example.com/fhir", "Patient", "p1", ""), Headers: hdr("initech")}, "unknown_tenant"},
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.DefaultProduceTopic(testTopic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		r.rec.Partition = 0
		if err := cl.ProduceSync(context.Background(), r.rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()

	h.runUntilCommitted(c, int64(len(records)))

	dl := readDeadLetters(t, h.brokers)
	wantDL := map[string]string{}
	for i, r := range records {
		if r.dlClass != "" {
			wantDL[fmt.Sprint(i)] = r.dlClass
		}
	}
	if len(dl) != len(wantDL) {
		t.Errorf("dead letters: got %d, want %d: %v", len(dl), len(wantDL), dl)
	}
	for i, r := range records {
		if off := fmt.Sprint(i); r.dlClass != "" && dl[off] != r.dlClass {
			t.Errorf("record %s (%s): dead-lettered as %q, want %q", off, r.name, dl[off], r.dlClass)
		}
	}
	rows := rawRows(t, h.roots["acme"])
	want := []string{"Patient/gone delete", "Patient/p1 1 upsert female", "Patient/p2 1 upsert other"}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("acme rows:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
	if got := srv.Log(); len(got) == 0 || got[0].Header.Get("Authorization") != "Bearer s3cret" {
		t.Errorf("fetch requests carry no bearer token")
	}
}

// readDeadLetters returns the class of every dead letter by original offset.
func readDeadLetters(t *testing.T, brokers []string) map[string]string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(testDLQ), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := map[string]string{}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		f := cl.PollFetches(ctx)
		cancel()
		n := 0
		f.EachRecord(func(r *kgo.Record) {
			n++
			var off, class string
			for _, h := range r.Headers {
				switch h.Key {
				case HeaderOriginalOffset:
					off = string(h.Value)
				case HeaderErrorClass:
					class = string(h.Value)
				}
			}
			out[off] = class
		})
		if n == 0 {
			return out
		}
	}
}

// rawRows lists "Type/id version operation gender" for every raw row.
func rawRows(t *testing.T, root string) []string {
	t.Helper()
	db := openDuckDB(t)
	rows, err := db.Query(fmt.Sprintf(`SELECT resource_type || '/' || id, coalesce(version_id, ''), operation, coalesce(json_extract_string(resource, '$.gender'), '')
		FROM read_parquet('%s/speed/resources/*/*.parquet') ORDER BY 1, 2`, root))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var key, v, op, g string
		if err := rows.Scan(&key, &v, &op, &g); err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.Join(strings.Fields(key+" "+v+" "+op+" "+g), " "))
	}
	return out
}

// TestWorkerTake: the filling buffer's offset range, epoch and bytes come
// from the deliveries taken since it opened, the first of them opens the
// policy, the records' bytes leave the budget, and a seal starts over.
func TestWorkerTake(t *testing.T) {
	c := benchConsumer(t)
	w := newWorker(c, testTopic, 0)
	defer w.filling.buf.Release()
	recs := benchRecords(t, 10)
	for i, r := range recs {
		r.Offset, r.LeaderEpoch = int64(100+i), int32(i/5)
		r.Timestamp = t0.Add(time.Duration(i) * time.Second)
	}
	c.buffered.Add(recordBytes(recs))
	w.take(recs[:4])
	if w.policy.empty() {
		t.Fatal("got an empty policy after the first delivery, want the buffer open")
	}
	w.take(recs[4:])
	f := &w.filling
	if f.first != 100 || f.last != 109 || f.epoch != 1 || !f.produced.Equal(t0) {
		t.Errorf("got range %d–%d, epoch %d, produced %v; want 100–109, epoch 1, produced %v", f.first, f.last, f.epoch, f.produced, t0)
	}
	if got, want := f.bytes, recordBytes(recs); got != want {
		t.Errorf("got %d record bytes in the buffer, want %d", got, want)
	}
	if got := c.buffered.Load(); got != 0 {
		t.Errorf("got %d polled bytes still counted, want 0", got)
	}
	w.publish()
	if got := w.peer(time.Now()); got.filling != f.bytes || got.due.IsZero() {
		t.Errorf("got published filling %d, due %v; want %d and a deadline", got.filling, got.due, f.bytes)
	}
	b, err := w.batch(reasonRows)
	if err != nil {
		t.Fatal(err)
	}
	defer w.finished(b)
	if b.first != 100 || b.last != 109 || b.epoch != 1 || b.nfiles == 0 {
		t.Errorf("got batch %d–%d, epoch %d, %d files; want 100–109, epoch 1, some files", b.first, b.last, b.epoch, b.nfiles)
	}
	if !w.policy.empty() || f.bytes != 0 {
		t.Errorf("after the seal: got empty %v, %d bytes; want empty, 0", w.policy.empty(), f.bytes)
	}
	if got := w.peer(time.Now()); got.filling != 0 || !got.due.IsZero() {
		t.Errorf("after the seal: got published filling %d, due %v; want 0, none", got.filling, got.due)
	}
}
