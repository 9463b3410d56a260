package receive

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/config"
	"fhirlake/internal/testenv"
	"fhirlake/notification"
)

const (
	topic  = "fhir.notifications"
	secret = "acme-hook-secret"
)

// hapiBackport is an R4 Backport notification as HAPI FHIR 8.8.0 sends it:
// counters as valueString, the event's timestamp as valueDate, a delete as
// an entry with only a request.
const hapiBackport = `{"resourceType":"Bundle","id":"31d11cde","type":"history","entry":[` +
	`{"fullUrl":"Parameters/74d576ed","resource":{"resourceType":"Parameters","id":"74d576ed","meta":{"profile":["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"]},"parameter":[` +
	`{"name":"subscription","valueReference":{"reference":"Subscription/1011"}},{"name":"topic","valueCanonical":"http://fhirlake.test/topic/plain"},` +
	`{"name":"status","valueCode":"active"},{"name":"type","valueCode":"event-notification"},{"name":"events-since-subscription-start","valueString":"2"},` +
	`{"name":"notification-event","part":[{"name":"event-number","valueString":"1"},{"name":"timestamp","valueDate":"2026-12-07"},{"name":"focus","valueReference":{"reference":"Encounter/e5"}}]},` +
	`{"name":"notification-event","part":[{"name":"event-number","valueString":"2"},{"name":"timestamp","valueDate":"2026-12-07"},{"name":"focus","valueReference":{"reference":"Patient/p5"}}]}]}},` +
	`{"request":{"method":"DELETE","url":"Encounter/e5"}},` +
	`{"fullUrl":"Patient/p5/_history/1","resource":{"resourceType":"Patient","id":"p5","meta":{"versionId":"1","lastUpdated":"2026-12-07T03:55:12.856+00:00"},"active":true},"request":{"method":"POST","url":"Patient"}}]}`

type fixture struct {
	srv     *Server
	http    *httptest.Server
	cluster *kfake.Cluster
	reader  *kgo.Client
	reg     *prometheus.Registry
}

func newFixture(t *testing.T, tune func(*Options)) *fixture {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	producer, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(time.Second), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	reader, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reader.Close)
	opts := Options{
		Topic: topic, TenantHeader: "fhir-tenant", SecretHeader: "X-Fhirlake-Secret",
		Secrets:         []Secret{{Tenant: "acme", SHA256: config.HashAPIKey(secret), Name: "hapi"}},
		MaxRequestBytes: 64 << 10, MaxConcurrent: 4, ProduceTimeout: time.Second,
	}
	if tune != nil {
		tune(&opts)
	}
	reg := prometheus.NewRegistry()
	srv := New(producer, opts, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &fixture{srv: srv, http: hs, cluster: cluster, reader: reader, reg: reg}
}

// call sends one request with the tenant's secret unless headers say
// otherwise, and returns the status, content type and body.
func (f *fixture) call(t *testing.T, method, path, body string, headers map[string]string) (int, string, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.http.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Fhirlake-Secret", secret)
	req.Header.Set("Content-Type", "application/fhir+json")
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	rsp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	b, _ := io.ReadAll(rsp.Body)
	return rsp.StatusCode, rsp.Header.Get("Content-Type"), string(b)
}

// records reads the topic until it holds n records.
func (f *fixture) records(t *testing.T, n int) []*kgo.Record {
	t.Helper()
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(out) < n {
		fs := f.reader.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("got %d records, want %d", len(out), n)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func decode(t *testing.T, r *kgo.Record) *notification.Notification {
	t.Helper()
	hs := make([]notification.Header, len(r.Headers))
	for i, h := range r.Headers {
		hs[i] = notification.Header{Key: h.Key, Value: h.Value}
	}
	n, err := notification.DecodeRecord(r.Value, hs)
	if err != nil {
		t.Fatalf("the consumer cannot decode %s: %v", r.Value, err)
	}
	return n
}

func summary(n *notification.Notification) []string {
	var out []string
	for _, ev := range n.Events {
		s := string(ev.Operation) + " " + ev.ResourceType + "/" + ev.ID + " v" + ev.VersionID
		if ev.Resource != nil {
			s += " resource"
		}
		out = append(out, s)
	}
	return out
}

// TestClassicRestHook: HAPI's PUT and DELETE become records the consumer
// decodes, with the tenant header, answered 200 with a FHIR body.
func TestClassicRestHook(t *testing.T) {
	f := newFixture(t, nil)
	code, ctype, body := f.call(t, "PUT", "/notify/Patient/p1",
		`{"resourceType":"Patient","id":"p1","meta":{"versionId":"1","lastUpdated":"2026-12-07T03:52:38.013+00:00"},"name":[{"family":"Y"}]}`,
		map[string]string{"If-Match": `W/"1"`})
	if code != 200 || ctype != "application/fhir+json" || !strings.Contains(body, `"resourceType":"OperationOutcome"`) {
		t.Fatalf("PUT: %d %s %s", code, ctype, body)
	}
	code, _, body = f.call(t, "DELETE", "/notify/Patient/p1", "", nil)
	if code != 200 {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	recs := f.records(t, 2)
	want := [][]string{{"upsert Patient/p1 v1 resource"}, {"delete Patient/p1 v"}}
	for i, r := range recs {
		if got := header(r, "fhir-tenant"); got != "acme" {
			t.Errorf("record %d: tenant header %q", i, got)
		}
		if header(r, "x-fhirlake-secret") != "" || strings.Contains(string(r.Value), secret) {
			t.Errorf("record %d carries the secret", i)
		}
		if string(r.Key) != "Patient/p1" {
			t.Errorf("record %d: key %q", i, r.Key)
		}
		n := decode(t, r)
		if n.Format != notification.FormatRestHook || !slices.Equal(summary(n), want[i]) {
			t.Errorf("record %d: %s %q, want %q", i, n.Format, summary(n), want[i])
		}
	}
	if del := decode(t, recs[1]); del.Events[0].LastUpdated.IsZero() {
		t.Errorf("delete without the time it was received")
	}
}

// TestTopicNotification: a Bundle goes to Kafka byte for byte, and HAPI,
// which posts it as a transaction, gets a Bundle back.
func TestTopicNotification(t *testing.T) {
	f := newFixture(t, nil)
	code, ctype, body := f.call(t, "POST", "/notify", hapiBackport, nil)
	if code != 200 || ctype != "application/fhir+json" || !strings.Contains(body, `"resourceType":"Bundle"`) {
		t.Fatalf("POST: %d %s %s", code, ctype, body)
	}
	r := f.records(t, 1)[0]
	if string(r.Value) != hapiBackport {
		t.Fatalf("record value changed:\n%s", r.Value)
	}
	n := decode(t, r)
	if got, want := summary(n), []string{"delete Encounter/e5 v", "upsert Patient/p5 v1 resource"}; n.Format != notification.FormatR4Backport || !slices.Equal(got, want) {
		t.Fatalf("got %s %q, want %q", n.Format, got, want)
	}
	if header(r, "fhir-tenant") != "acme" || string(r.Key) != "Subscription/1011" {
		t.Fatalf("headers %v, key %q", r.Headers, r.Key)
	}
}

// TestBareResourceHeaders: a rest-hook that posts a bare resource says a
// delete in a header, which travels with the record; other headers do not.
func TestBareResourceHeaders(t *testing.T) {
	f := newFixture(t, nil)
	code, _, body := f.call(t, "POST", "/notify", `{}`, map[string]string{
		"X-Medplum-Deleted-Resource": "Patient/p9", "Authorization": "Bearer other", "X-Custom": "x"})
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	r := f.records(t, 1)[0]
	if got := summary(decode(t, r)); !slices.Equal(got, []string{"delete Patient/p9 v"}) {
		t.Fatalf("got %q", got)
	}
	for _, h := range r.Headers {
		if h.Key != "x-medplum-deleted-resource" && h.Key != "fhir-tenant" {
			t.Errorf("header %s travelled with the record", h.Key)
		}
	}
}

// TestRefused: calls that cannot be stored are answered with an
// OperationOutcome saying why, and nothing reaches Kafka.
func TestRefused(t *testing.T) {
	f := newFixture(t, nil)
	for _, c := range []struct {
		name, method, path, body string
		headers                  map[string]string
		code                     int
		reason                   string
	}{
		{"no secret", "POST", "/notify", hapiBackport, map[string]string{"X-Fhirlake-Secret": ""}, 401, "secret"},
		{"wrong secret", "POST", "/notify", hapiBackport, map[string]string{"X-Fhirlake-Secret": "guess"}, 401, "secret"},
		{"not JSON", "POST", "/notify", `<Bundle/>`, nil, 400, "XML, not JSON"},
		{"PUT of another resource", "PUT", "/notify/Patient/p2", `{"resourceType":"Patient","id":"p1","active":true}`, nil, 400, "names Patient/p2"},
		{"PUT without body", "PUT", "/notify/Patient/p1", "", nil, 400, "PUT without a resource"},
		{"bad type", "DELETE", "/notify/patient/p1", "", nil, 400, "is not a FHIR resource type"},
		{"too large", "POST", "/notify", `{"resourceType":"Patient","id":"p1","text":"` + strings.Repeat("x", 65<<10) + `"}`, nil, 413, "larger than"},
		{"unknown route", "GET", "/notify", "", nil, 404, "POST a notification to /notify"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, body := f.call(t, c.method, c.path, c.body, c.headers)
			if code != c.code || !strings.Contains(body, c.reason) {
				t.Fatalf("got %d %s, want %d with %q", code, body, c.code, c.reason)
			}
		})
	}
	// A stored call after all of them is the first record.
	if code, _, _ := f.call(t, "DELETE", "/notify/Patient/last", "", nil); code != 200 {
		t.Fatalf("DELETE: %d", code)
	}
	if got := summary(decode(t, f.records(t, 1)[0])); !slices.Equal(got, []string{"delete Patient/last v"}) {
		t.Fatalf("first record: %q", got)
	}
}

// TestKafkaDown: without an acknowledgement the server is told to retry.
func TestKafkaDown(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.ProduceTimeout = 300 * time.Millisecond })
	f.cluster.Close()
	code, ctype, body := f.call(t, "POST", "/notify", hapiBackport, nil)
	if code != http.StatusServiceUnavailable || ctype != "application/fhir+json" || !strings.Contains(body, "retry") {
		t.Fatalf("got %d %s %s", code, ctype, body)
	}
	if got := testutil.ToFloat64(f.srv.metrics.rejected.WithLabelValues("kafka")); got != 1 {
		t.Fatalf("rejected{reason=kafka} = %v", got)
	}
}

// TestBusy: beyond max_concurrent calls in progress, a call is turned away
// at once with Retry-After.
func TestBusy(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxConcurrent = 1 })
	pr, pw := io.Pipe()
	defer pw.Close()
	first := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", f.http.URL+"/notify", pr)
		req.Header.Set("X-Fhirlake-Secret", secret)
		rsp, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- 0
			return
		}
		rsp.Body.Close()
		first <- rsp.StatusCode
	}()
	if _, err := pw.Write([]byte(hapiBackport[:10])); err != nil { // the first call holds the only slot, reading its body
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(f.srv.metrics.inFlight) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first call never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	code, _, body := f.call(t, "POST", "/notify", hapiBackport, nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "calls in progress") {
		t.Fatalf("second call: %d %s", code, body)
	}
	if _, err := pw.Write([]byte(hapiBackport[10:])); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if got := <-first; got != 200 {
		t.Fatalf("first call: %d", got)
	}
}

// TestMetricsAndHealth: /healthz, /readyz and the request counter.
func TestMetricsAndHealth(t *testing.T) {
	f := newFixture(t, nil)
	f.call(t, "DELETE", "/notify/Patient/p1", "", nil)
	for _, path := range []string{"/healthz", "/readyz"} {
		rsp, err := http.Get(f.http.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		rsp.Body.Close()
		if rsp.StatusCode != 200 {
			t.Errorf("%s: %d", path, rsp.StatusCode)
		}
	}
	rsp, err := http.Get(f.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rsp.Body)
	rsp.Body.Close()
	if !strings.Contains(string(b), `fhirlake_receive_requests_total{code="200",method="DELETE",tenant="acme"} 1`) {
		t.Fatalf("metrics:\n%s", b)
	}
	var oo map[string]any
	_, _, body := f.call(t, "POST", "/notify", "{", nil)
	if err := json.Unmarshal([]byte(body), &oo); err != nil || oo["resourceType"] != "OperationOutcome" {
		t.Fatalf("refusal is not an OperationOutcome: %s", body)
	}
}

// TestPublishedExamples: every published notification example — R4
// Backport, R4B and R5; handshake, heartbeat, full-resource, id-only, empty,
// query-status — is accepted and reaches Kafka byte for byte, with the
// tenant header.
func TestPublishedExamples(t *testing.T) {
	dir := testenv.Shared(t, "data", "notifications", "examples")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples in %s: %v", dir, err)
	}
	f := newFixture(t, func(o *Options) { o.MaxRequestBytes = 1 << 20 })
	sent := map[string]bool{}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		code, ctype, body := f.call(t, "POST", "/notify", string(b), nil)
		if code != 200 || ctype != "application/fhir+json" {
			t.Fatalf("%s: %d %s", filepath.Base(p), code, body)
		}
		sent[string(b)] = true
	}
	for _, r := range f.records(t, len(files)) {
		if !sent[string(r.Value)] || header(r, "fhir-tenant") != "acme" {
			t.Errorf("record at %d is not an example as sent, or lacks the tenant", r.Offset)
		}
		decode(t, r)
	}
}
