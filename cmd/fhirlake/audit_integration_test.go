//go:build integration

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fhirlake/audit"
	"fhirlake/config"
)

// TestIntegrationAuditTrail: on an S3 tenant of the local stack, a
// compaction, a `fhirlake query` and the query server's requests (answered
// by the tenant's worker process) each leave their record in the audit
// trail: who, which tenant, the request id a client was given, the SQL (or
// its SHA-256), rows, bytes and status. A statement refused and a key that
// opens nothing are recorded too.
func TestIntegrationAuditTrail(t *testing.T) {
	st := needStack(t)
	needDBT(t)
	addr := freeAddr(t)
	const key = "it-audit-key"
	r := newRun(t, st, []string{"acme"}, bucket, compactSettings+fmt.Sprintf(
		"audit:\n  path: %s\n  sql: full\nserve:\n  listen: %q\n  api_keys:\n    - {tenant: acme, key_sha256: %s, name: it-dashboards}\n",
		"AUDIT_PATH", addr, config.HashAPIKey(key)))
	trail := filepath.Join(r.dir, "audit", "audit.log")
	b, err := os.ReadFile(r.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.config, bytes.ReplaceAll(b, []byte("AUDIT_PATH"), []byte(trail)), 0o644); err != nil {
		t.Fatal(err)
	}

	r.fhirlake(t, "backfill", "-q", "--tenant", "acme", patientsNDJSON(t, r.dir, 3))
	r.mustCompact(t, "--tenant", "acme")
	const q = "SELECT count(*) AS n FROM patient"
	out := r.fhirlake(t, "query", "--tenant", "acme", "--format", "csv", q)
	if out != "n\n3\n" {
		t.Fatalf("fhirlake query: got %q", out)
	}
	// The statement's SHA-256 instead of its text, set by the environment.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := r.cmd(ctx, "query", "--tenant", "acme", "DROP TABLE patient")
	c.Env = append(c.Env, "FHIRLAKE_AUDIT_SQL=sha256")
	if b, err := c.CombinedOutput(); err == nil {
		t.Fatalf("a refused statement exited 0: %s", b)
	}

	srv := r.cmd(context.Background(), "serve", "--log-level", "warn")
	var serveLog strings.Builder
	srv.Stdout, srv.Stderr = &serveLog, &serveLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	stopServe := func() {
		_ = srv.Process.Signal(os.Interrupt) // fails only once it has exited
		if err := srv.Wait(); err != nil && srv.ProcessState == nil {
			t.Errorf("serve: %v", err)
		}
	}
	defer func() {
		if srv.ProcessState == nil {
			stopServe()
		}
		if t.Failed() {
			t.Logf("serve:\n%s", lastLines(serveLog.String(), 30))
		}
	}()
	api := &serveClient{t: t, base: "http://" + addr}
	api.waitHealthy(60 * time.Second)
	// post returns the response's status, its request id and its body.
	post := func(key, sql string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, api.base+"/v1/tenants/acme/query?format=csv", strings.NewReader(sql))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Fhirlake-Request-Id"), string(b)
	}
	code, requestID, body := post(key, q)
	if code != http.StatusOK || body != "n\n3\n" || requestID == "" {
		t.Fatalf("serve: got %d %q, request id %q", code, body, requestID)
	}
	if code, _, _ := post("not-a-key", q); code != http.StatusUnauthorized {
		t.Fatalf("an unknown key: got %d, want 401", code)
	}
	// serve writes its last records as it stops.
	stopServe()
	if code := srv.ProcessState.ExitCode(); code != 0 {
		t.Errorf("serve exited %d after an interrupt, want 0", code)
	}

	recs := readTrail(t, trail)
	if len(recs) != 5 {
		t.Fatalf("got %d records, want 5 (compaction, 2 queries, 2 requests): %+v", len(recs), recs)
	}
	for i, rec := range recs {
		if rec.Audit != audit.Version || rec.Tenant != "acme" || rec.Time.IsZero() || rec.DurationMS <= 0 {
			t.Errorf("record %d: got %+v, want version %d, tenant acme, a time and a duration", i, rec, audit.Version)
		}
	}
	if rec := recs[0]; rec.Kind != audit.KindCompaction || rec.Source != audit.SourceCompact || rec.Status != "published" ||
		rec.Snapshot == "" || rec.Rows != 3 || rec.Key != actor() {
		t.Errorf("compaction: got %+v, want acme's published snapshot of 3 resources", rec)
	}
	if rec := recs[1]; rec.Kind != audit.KindQuery || rec.Source != audit.SourceCLI || rec.SQL != q || rec.Rows != 1 ||
		rec.Bytes != int64(len(out)) || rec.Status != audit.StatusOK || rec.Key != actor() || rec.RequestID == "" {
		t.Errorf("fhirlake query: got %+v", rec)
	}
	if rec := recs[2]; rec.SQL != "" || rec.SQLSHA256 != audit.SHA256("DROP TABLE patient") || rec.Status != "statement_refused" {
		t.Errorf("fhirlake query refused, sql: sha256: got %+v", rec)
	}
	if rec := recs[3]; rec.Kind != audit.KindQuery || rec.Source != audit.SourceServe || rec.Key != "it-dashboards" || rec.SQL != q ||
		rec.Rows != 1 || rec.Bytes != int64(len(body)) || rec.Status != audit.StatusOK || rec.HTTPStatus != http.StatusOK ||
		rec.RequestID != requestID || rec.Remote == "" {
		t.Errorf("serve's answer: got %+v, want it-dashboards' query, 1 row, %d bytes, request id %s", rec, len(body), requestID)
	}
	if rec := recs[4]; rec.Key != "" || rec.Status != "unauthorized" || rec.HTTPStatus != http.StatusUnauthorized {
		t.Errorf("serve's refusal: got %+v", rec)
	}
}
