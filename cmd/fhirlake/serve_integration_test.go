//go:build integration

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/config"
)

// TestIntegrationServeFreshness: a change produced to Kafka is visible
// through `fhirlake serve` (S3 tenants, read directly through httpfs) within
// flush.max_age + 2 s (in one of three attempts per step); an update
// replaces the row, a delete removes it, and nothing is counted twice. `fhirlake consume` and `fhirlake serve` run as
// processes of their own on an isolated topic and key prefix.
func TestIntegrationServeFreshness(t *testing.T) {
	st := needStack(t)
	const maxAge = time.Second
	addr := freeAddr(t)
	keys := map[string]string{"acme": "it-acme-key", "globex": "it-globex-key"}
	extra := fmt.Sprintf("serve:\n  listen: %q\n  refresh_interval: 250ms\n  metrics_tenant_labels: true\n  api_keys:\n", addr)
	for tn, k := range keys {
		extra += fmt.Sprintf("    - {tenant: %s, key_sha256: %s}\n", tn, config.HashAPIKey(k))
	}
	r := newRun(t, st, []string{"acme", "globex"}, func(tn string) string { return os.Getenv(envName(tn, "BUCKET")) }, extra)
	r.startConsumer(t)
	r.startServe(t, addr)
	api := &serveClient{t: t, base: "http://" + addr}
	api.waitHealthy(60 * time.Second)

	cl, err := kgo.NewClient(kgo.SeedBrokers(st.brokers...), kgo.DefaultProduceTopic(r.topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce := func(tenant, interaction, typ, id, body string, version ...string) time.Time {
		t.Helper()
		rec := &kgo.Record{Key: []byte(typ + "/" + id), Value: []byte(body), Headers: []kgo.RecordHeader{
			{Key: "fhir-tenant", Value: []byte(tenant)}, {Key: "fhir-interaction", Value: []byte(interaction)},
			{Key: "fhir-resource", Value: []byte(typ + "/" + id)}, {Key: "content-type", Value: []byte("application/fhir+json")},
		}}
		for _, v := range version {
			// A deletion is a version of its own, as FHIR servers record it.
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: "fhir-version-id", Value: []byte(v)})
		}
		for attempt := 0; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := cl.ProduceSync(ctx, rec).FirstErr()
			cancel()
			if err == nil {
				return time.Now()
			}
			if attempt == 5 {
				t.Fatalf("produce: %v", err)
			}
			time.Sleep(5 * time.Second) // the broker may be restarting under a failure test
		}
	}
	patient := func(id, version, gender string) string {
		return fmt.Sprintf(`{"resourceType":"Patient","id":%q,"meta":{"versionId":%q,"lastUpdated":"%s"},"gender":%q,"birthDate":"1980-01-01"}`,
			id, version, time.Now().UTC().Format(time.RFC3339Nano), gender)
	}
	// The consumer must have joined the group before the freshness clock
	// starts: a first record, waited for without a deadline that counts.
	produce("acme", "create", "Patient", "warmup", patient("warmup", "1", "other"))
	api.waitFor("acme", keys["acme"], "SELECT count(*) AS n FROM patient WHERE id = 'warmup'", "1", 90*time.Second)

	// Each step is timed from its produce to its first visible result. A
	// step over the budget is logged and measured again with a change of its
	// own, up to three times, so that one stall of a loaded machine does not
	// fail the suite while a consumer or server that is always late does.
	budget := maxAge + 2*time.Second
	timed := func(what string, step func(n int) (sent time.Time, sql, want string)) {
		t.Helper()
		const attempts = 3
		for n := 1; ; n++ {
			sent, sql, want := step(n)
			got := api.waitFor("acme", keys["acme"], sql, want, budget+30*time.Second)
			lat := got.Sub(sent)
			if lat <= budget {
				t.Logf("%s: visible after %s (attempt %d)", what, lat.Round(time.Millisecond), n)
				return
			}
			if n == attempts {
				t.Errorf("%s: visible after %s in each of %d attempts, want within %s (flush.max_age + 2 s)", what, lat.Round(time.Millisecond), attempts, budget)
				return
			}
			t.Logf("%s: visible after %s, over %s; measuring again", what, lat.Round(time.Millisecond), budget)
		}
	}
	id, version := "", 0
	timed("create", func(n int) (time.Time, string, string) {
		id, version = fmt.Sprintf("p%d", n), 1
		sent := produce("acme", "create", "Patient", id, patient(id, "1", "female"))
		return sent, fmt.Sprintf("SELECT count(*) AS n FROM patient WHERE id = '%s' AND gender = 'female'", id), "1"
	})
	timed("update", func(n int) (time.Time, string, string) {
		version++
		v := strconv.Itoa(version)
		sent := produce("acme", "update", "Patient", id, patient(id, v, "male"))
		return sent, fmt.Sprintf("SELECT count(*) AS n FROM patient WHERE id = '%s' AND gender = 'male' AND _version_id = '%s'", id, v), "1"
	})
	// Exactly one row per resource: the update replaced the first version.
	if got := api.scalar("acme", keys["acme"], fmt.Sprintf("SELECT count(*) AS n FROM patient WHERE id = '%s'", id)); got != "1" {
		t.Errorf("rows of %s after the update: got %s, want 1", id, got)
	}
	timed("delete", func(n int) (time.Time, string, string) {
		if n > 1 {
			// The resource is gone: bring it back, untimed, to delete it again.
			version++
			produce("acme", "update", "Patient", id, patient(id, strconv.Itoa(version), "male"))
			api.waitFor("acme", keys["acme"], fmt.Sprintf("SELECT count(*) AS n FROM patient WHERE id = '%s'", id), "1", 90*time.Second)
		}
		version++
		sent := produce("acme", "delete", "Patient", id, "{}", strconv.Itoa(version))
		return sent, fmt.Sprintf("SELECT count(*) AS n FROM patient WHERE id = '%s'", id), "0"
	})
	// Nothing counted twice across all of it, and globex sees none of it.
	if got := api.scalar("acme", keys["acme"], "SELECT count(*) - count(DISTINCT id) AS n FROM resources"); got != "0" {
		t.Errorf("duplicate resources: %s", got)
	}
	if got := api.scalar("globex", keys["globex"], "SELECT count(*) AS n FROM resources"); got != "0" {
		t.Errorf("globex sees %s resources of acme's", got)
	}
	if code := api.status("globex", keys["acme"]); code != http.StatusForbidden {
		t.Errorf("acme's key on globex: got %d, want 403", code)
	}
	resp, err := http.Get(api.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"fhirlake_query_view_builds_total{tenant=\"acme\"}", "fhirlake_query_requests_total{route=\"query\",status=\"200\",tenant=\"acme\"}"} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// startServe starts `fhirlake serve` as a process of its own.
func (r *run) startServe(t *testing.T, addr string) {
	t.Helper()
	c := r.cmd(context.Background(), "serve", "--listen", addr, "--log-level", "warn")
	logPath := filepath.Join(r.dir, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.ProcessState == nil {
			// Signal and Kill fail only when serve has already exited,
			// and then Wait returns at once.
			_ = c.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() {
				if err := c.Wait(); err != nil {
					t.Logf("serve exited: %v", err)
				}
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = c.Process.Kill()
				<-done
			}
		}
		logf.Close()
		if t.Failed() {
			logTail(t, logPath, 40)
		}
	})
}

type serveClient struct {
	t    *testing.T
	base string
}

func (c *serveClient) waitHealthy(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(c.base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("serve not healthy after %s", d)
}

// query runs sql and returns the first column of the first row as text;
// ok is false on any error (S3 or Kafka may be down for a while).
func (c *serveClient) query(tenant, key, sql string) (string, bool) {
	body, _ := json.Marshal(map[string]string{"sql": sql})
	req, _ := http.NewRequest("POST", c.base+"/v1/tenants/"+tenant+"/query", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	var res struct {
		Columns []struct{ Name string }
		Rows    []map[string]any
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&res) != nil || len(res.Rows) == 0 || len(res.Columns) == 0 {
		return "", false
	}
	return fmt.Sprint(res.Rows[0][res.Columns[0].Name]), true
}

func (c *serveClient) scalar(tenant, key, sql string) string {
	c.t.Helper()
	for i := 0; i < 30; i++ {
		if v, ok := c.query(tenant, key, sql); ok {
			return v
		}
		time.Sleep(time.Second)
	}
	c.t.Fatalf("%s: no answer", sql)
	return ""
}

// waitFor polls until sql yields want and returns when it did.
func (c *serveClient) waitFor(tenant, key, sql, want string, d time.Duration) time.Time {
	c.t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		if v, ok := c.query(tenant, key, sql); ok {
			if v == want {
				return time.Now()
			}
			last = v
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("%s: still %q after %s, want %s", sql, last, d, want)
	return time.Time{}
}

func (c *serveClient) status(tenant, key string) int {
	req, _ := http.NewRequest("POST", c.base+"/v1/tenants/"+tenant+"/query", strings.NewReader("SELECT 1"))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
