//go:build integration

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/config"
	"fhirlake/query/web"
)

// TestIntegrationCompleteness: `fhirlake serve` reports, per tenant, the
// time through which the lake is complete, read from the real broker. A
// backlog nobody consumed yet is complete through its first record; once
// `fhirlake consume` has made everything durable, through the latest check;
// with the consumer stopped and new records produced, through the first of
// them — and it stays there — until a consumer catches up again. While
// Kafka is down it is unknown, never the last time read.
func TestIntegrationCompleteness(t *testing.T) {
	st := needStack(t)
	addr := freeAddr(t)
	const key = "it-acme-complete-key"
	extra := fmt.Sprintf("serve:\n  listen: %q\n  refresh_interval: 250ms\n  metrics_tenant_labels: true\n  api_keys:\n    - {tenant: acme, key_sha256: %s}\n",
		addr, config.HashAPIKey(key))
	tenants := []string{"acme"}
	r := newRun(t, st, tenants, func(tn string) string { return os.Getenv(envName(tn, "BUCKET")) }, extra)
	r.dropOnSuccess(t, st, tenants)
	r.fhirlake(t, "topics", "create")
	r.startServe(t, addr)
	api := &serveClient{t: t, base: "http://" + addr}
	api.waitHealthy(60 * time.Second)

	cl, err := kgo.NewClient(kgo.SeedBrokers(st.brokers...), kgo.DefaultProduceTopic(r.topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// produce sends n patients of acme stamped first, first+1s, …, spread
	// over the topic's partitions by key.
	produce := func(batch string, first time.Time, n int) {
		t.Helper()
		for i := range n {
			id := fmt.Sprintf("%s-%d", batch, i)
			ts := first.Add(time.Duration(i) * time.Second)
			body := fmt.Sprintf(`{"resourceType":"Patient","id":%q,"meta":{"versionId":"1","lastUpdated":"%s"},"gender":"female"}`, id, ts.Format(time.RFC3339Nano))
			cl.Produce(context.Background(), &kgo.Record{Key: []byte("Patient/" + id), Value: []byte(body), Timestamp: ts, Headers: []kgo.RecordHeader{
				{Key: "fhir-tenant", Value: []byte("acme")}, {Key: "fhir-interaction", Value: []byte("create")},
				{Key: "content-type", Value: []byte("application/fhir+json")},
			}}, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Errorf("produce %s: %v", id, err)
				}
			})
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Kafka keeps milliseconds.
	backlog := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
	late := time.Now().Add(-5 * time.Minute).Truncate(time.Millisecond)

	// A backlog no consumer has read: the group has never committed.
	produce("backlog", backlog, 20)
	got := waitComplete(t, api, key, "the backlog before any consumer", func(c complete) bool { return c.known() && c.through().Equal(backlog) })
	t.Logf("before any consumer: complete through %s (the backlog's first record)", got.through())

	// Consumed and durable: complete through the check.
	c := r.startConsumer(t)
	adm := r.admin(t, st)
	r.waitLag(t, adm, 3*time.Minute)
	caughtUp := time.Now()
	got = waitComplete(t, api, key, "caught up", func(c complete) bool { return c.known() && !c.through().Before(caughtUp) })
	if !got.through().Equal(got.checked()) {
		t.Errorf("caught up: complete through %s, want the check's time %s", got.through(), got.checked())
	}

	// The consumer stops; new records wait: complete through the first of
	// them, and it stays there while nothing consumes.
	stopConsumer(t, c)
	produce("late", late, 20)
	got = waitComplete(t, api, key, "consumer stopped", func(c complete) bool { return c.known() && c.through().Equal(late) })
	first := got.checked()
	got = waitComplete(t, api, key, "a later check", func(c complete) bool { return c.known() && c.checked().After(first) })
	if !got.through().Equal(late) {
		t.Errorf("consumer stopped, a later check: complete through %s, want still %s (the first record not durable)", got.through(), late)
	}
	if got.Header != late.Format(time.RFC3339Nano) {
		t.Errorf("header %s: got %q, want %s", web.CompleteThroughHeader, got.Header, late.Format(time.RFC3339Nano))
	}
	status := getJSON(t, api.base+"/v1/status/tenants/acme", key)
	if s := status.Completeness; s.CompleteThrough == nil || !s.CompleteThrough.Equal(late) {
		t.Errorf("tenant status: complete through %v, want %s", s.CompleteThrough, late)
	}
	m, err := scrapeAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	if v := m[`fhirlake_lake_complete_through_seconds{tenant="acme"}`]; math.Abs(v-float64(late.UnixMilli())/1e3) > 1e-3 {
		t.Errorf("fhirlake_lake_complete_through_seconds{tenant=\"acme\"}: got %f, want %f", v, float64(late.UnixMilli())/1e3)
	}

	// Consumed again: complete through the check once more.
	r.startConsumer(t)
	r.waitLag(t, adm, 3*time.Minute)
	caughtUp = time.Now()
	waitComplete(t, api, key, "caught up again", func(c complete) bool { return c.known() && !c.through().Before(caughtUp) })

	// Kafka down: unknown, with no time and no metric series.
	keepServiceRunning(t, "kafka")
	stackCmd(t, "stop", "kafka")
	got = waitComplete(t, api, key, "kafka down", func(c complete) bool { return c.Completeness.State == "unknown" })
	if got.Completeness.CompleteThrough != nil || got.Header != "unknown" {
		t.Errorf("kafka down: got %+v, header %q; want no time, header unknown", got.Completeness, got.Header)
	}
	if m, err := scrapeAddr(addr); err != nil {
		t.Fatal(err)
	} else if _, ok := m[`fhirlake_lake_complete_through_seconds{tenant="acme"}`]; ok {
		t.Errorf("kafka down: /metrics still has fhirlake_lake_complete_through_seconds for acme")
	}
	stackCmd(t, "start", "kafka")
	waitComplete(t, api, key, "kafka back", func(c complete) bool { return c.known() })
}

// complete is what /tables says of the lake's completeness, and its header.
type complete struct {
	Completeness struct {
		State           string     `json:"state"`
		CompleteThrough *time.Time `json:"complete_through"`
		Checked         *time.Time `json:"checked"`
	} `json:"completeness"`
	Header string `json:"-"`
}

func (c complete) known() bool {
	return c.Completeness.State == "ok" && c.Completeness.CompleteThrough != nil && c.Completeness.Checked != nil
}
func (c complete) through() time.Time { return *c.Completeness.CompleteThrough }
func (c complete) checked() time.Time { return *c.Completeness.Checked }

// getJSON reads a tenant route's completeness.
func getJSON(t *testing.T, url, key string) complete {
	t.Helper()
	c, err := readComplete(url, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readComplete(url, key string) (complete, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return complete{}, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return complete{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return complete{}, fmt.Errorf("%s: %s", url, resp.Status)
	}
	var c complete
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return complete{}, err
	}
	c.Header = resp.Header.Get(web.CompleteThroughHeader)
	return c, nil
}

// waitComplete polls acme's /tables until ok holds, for at most two
// minutes, and returns that answer. Every answer it sees is checked: a
// time never later than its check.
func waitComplete(t *testing.T, api *serveClient, key, what string, ok func(complete) bool) complete {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var last complete
	var lastErr error
	for time.Now().Before(deadline) {
		c, err := readComplete(api.base+"/v1/tenants/acme/tables", key)
		if err == nil {
			if c.known() && c.through().After(c.checked()) {
				t.Fatalf("%s: complete through %s, after its check %s", what, c.through(), c.checked())
			}
			if ok(c) {
				return c
			}
			last = c
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: after 2 minutes /tables still says %+v (header %q, error %v)", what, last.Completeness, last.Header, lastErr)
	return complete{}
}
