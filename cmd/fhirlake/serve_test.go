package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fhirlake/audit"
	"fhirlake/config"
	"fhirlake/query/querytest"
)

func TestHashKey(t *testing.T) {
	cmd := newHashKeyCmd()
	var out bytes.Buffer
	cmd.SetIn(strings.NewReader("s3cret\n"))
	cmd.SetOut(&out)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(out.String()), config.HashAPIKey("s3cret"); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	out.Reset()
	cmd.SetArgs([]string{"--generate"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var key, sum string
	if _, err := fmt.Sscanf(out.String(), "key: %s\nkey_sha256: %s", &key, &sum); err != nil {
		t.Fatalf("generate: %q: %v", out.String(), err)
	}
	if key == "" || sum != config.HashAPIKey(key) {
		t.Fatalf("generate: %q", out.String())
	}
}

// TestServe runs the command's server over a local tenant and stops it: a
// query with the tenant's key, the status with the admin key only, and
// metrics without tenant names.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	lake := filepath.Join(dir, "lake", "acme")
	querytest.WriteRaw(t, lake, "acme", "t-0-0-0", []querytest.Row{{Type: "Patient", ID: "p1", Version: "1", Op: "upsert", Offset: 0}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	conf := fmt.Sprintf(`kafka: {brokers: ["127.0.0.1:1"]}
work_dir: %s
serve:
  listen: %s
  api_keys: [{tenant: acme, name: dashboards, key_sha256: %s}]
  admin_keys: [{name: ops, key_sha256: %s}]
  max_queued: 2
audit: {path: %s, sql: sha256}
tenants:
  - {name: acme, store: {type: local, path: %s}}
`, filepath.Join(dir, "work"), addr, config.HashAPIKey("k"), config.HashAPIKey("admin"), filepath.Join(dir, "audit.log"), lake)
	path := filepath.Join(dir, "fhirlake.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	root := newRoot()
	root.SetArgs([]string{"--config", path, "serve", "--log-level", "error"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	var resp *http.Response
	for i := 0; i < 100; i++ {
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/tenants/acme/query", strings.NewReader("SELECT count(*) AS n FROM patient"))
		req.Header.Set("Authorization", "Bearer k")
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Accept", "text/csv")
		if resp, err = http.DefaultClient.Do(req); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, err = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body.String() != "n\n1\n" {
		t.Fatalf("got %d %q", resp.StatusCode, body.String())
	}
	if resp.Header.Get("Fhirlake-Request-Id") == "" {
		t.Error("the response has no request id")
	}
	get := func(path, key string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		if _, err := b.ReadFrom(resp.Body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b.String()
	}
	for _, tc := range []struct {
		path, key string
		want      int
	}{
		{"/v1/status", "", 401},
		{"/v1/status", "k", 403},
		{"/v1/status", "admin", 200},
		{"/v1/status/tenants/acme", "", 401},
		{"/v1/status/tenants/acme", "k", 200},
	} {
		if got, b := get(tc.path, tc.key); got != tc.want {
			t.Errorf("%s with key %q: got %d %s, want %d", tc.path, tc.key, got, b, tc.want)
		}
	}
	if code, m := get("/metrics", ""); code != 200 || strings.Contains(m, "acme") || !strings.Contains(m, `fhirlake_query_requests_total{route="query",status="200",tenant="*"} 1`) {
		t.Errorf("metrics: got %d, want the query counted under tenant=\"*\" and no tenant name:\n%s", code, m)
	}
	// The worker answered the query; the front counts the rows it returned.
	if _, m := get("/metrics", ""); !strings.Contains(m, `fhirlake_query_rows_total{tenant="*"} 1`) {
		t.Errorf("metrics: want the query's row counted:\n%s", m)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
	// The front's audit trail: the query, and the tenant's status asked
	// without a key and with it; /v1/status is nobody's data.
	recs := readTrail(t, filepath.Join(dir, "audit.log"))
	if len(recs) != 3 {
		t.Fatalf("got %d audit records, want 3: %+v", len(recs), recs)
	}
	if r := recs[0]; r.Kind != "query" || r.Source != "serve" || r.Key != "dashboards" || r.SQL != "" ||
		r.SQLSHA256 != audit.SHA256("SELECT count(*) AS n FROM patient") || r.Rows != 1 || r.Bytes != 4 || r.Status != "ok" ||
		r.RequestID != resp.Header.Get("Fhirlake-Request-Id") {
		t.Errorf("query record: got %+v", r)
	}
	if r := recs[1]; r.Kind != "status" || r.Status != "unauthorized" || r.HTTPStatus != 401 {
		t.Errorf("status without a key: got %+v", r)
	}
}
