package web

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fhirlake/audit"
	"fhirlake/config"
	"fhirlake/query"
)

// auditedServer serves f's pool with named keys and an audit trail in a
// file of sql mode; read returns the trail's records once the writer is
// closed.
func auditedServer(t *testing.T, f *fixture, mode audit.SQLMode, o Options) (srv *fixture, read func() []map[string]any) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit", "audit.log")
	w, err := audit.Open(audit.Options{Path: path, SQL: mode}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	o.Keys = []Key{
		{Tenant: "acme", SHA256: config.HashAPIKey(acmeKey), Name: "dashboards"},
		{Tenant: "globex", SHA256: config.HashAPIKey(globexKey), Name: "globex-etl"},
	}
	o.AdminKeys = admins
	o.Audit = w
	s := *f
	s.srv = httptest.NewServer(New(f.pool, o, nil, nil).Handler())
	t.Cleanup(s.srv.Close)
	return &s, func() []map[string]any {
		t.Helper()
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("audit file mode: got %v, want 0600", fi.Mode().Perm())
		}
		file, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		var recs []map[string]any
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("audit line is not one JSON object: %v\n%s", err, sc.Text())
			}
			recs = append(recs, m)
		}
		return recs
	}
}

// want checks the fields of rec named in fields, numbers as JSON has them.
func want(t *testing.T, i int, rec map[string]any, fields map[string]any) {
	t.Helper()
	for k, v := range fields {
		if n, ok := v.(int); ok {
			v = float64(n)
		}
		if got, ok := rec[k]; v == nil && ok {
			t.Errorf("record %d: got %s %v, want none", i, k, got)
		} else if v != nil && got != v {
			t.Errorf("record %d: got %s %v (%T), want %v", i, k, got, got, v)
		}
	}
}

// TestAuditRecordsEveryTenantRequest: each request to a tenant's routes —
// answered, refused, or turned away at the door — leaves one line in the
// audit trail with who, what, how much and how it ended.
func TestAuditRecordsEveryTenantRequest(t *testing.T) {
	f, read := auditedServer(t, newFixture(t, Options{}, query.Options{}), audit.SQLFull, Options{})
	const q = "SELECT id FROM patient ORDER BY id"
	okJSON, okBody := f.query(t, "acme", acmeKey, q)
	okCSV, csvBody := f.query(t, "acme", acmeKey, q, "Accept", "text/csv")
	refused, _ := f.query(t, "acme", acmeKey, "DROP TABLE patient")
	other, _ := f.query(t, "globex", acmeKey, q)
	nokey, _ := f.query(t, "acme", "", q)
	tables, tablesBody := f.do(t, "GET", "/v1/tenants/acme/tables", acmeKey, nil)
	status, _ := f.do(t, "GET", "/v1/status/tenants/globex", adminKey, nil)
	for i, r := range []reply{okJSON, okCSV, refused, other, nokey, tables, status} {
		if want := []int{200, 200, 400, 403, 401, 200, 200}[i]; r.StatusCode != want {
			t.Fatalf("request %d: got %d, want %d", i, r.StatusCode, want)
		}
	}
	recs := read()
	if len(recs) != 7 {
		t.Fatalf("got %d audit records, want 7: %v", len(recs), recs)
	}
	want(t, 0, recs[0], map[string]any{"audit": 1, "kind": "query", "source": "serve", "tenant": "acme", "key": "dashboards",
		"request_id": okJSON.Header.Get(RequestIDHeader), "sql": q, "rows": 2, "bytes": len(okBody), "status": "ok", "http_status": 200})
	want(t, 1, recs[1], map[string]any{"kind": "query", "rows": 2, "bytes": len(csvBody), "status": "ok"})
	want(t, 2, recs[2], map[string]any{"kind": "query", "sql": "DROP TABLE patient", "rows": 0, "status": "statement_refused", "http_status": 400})
	want(t, 3, recs[3], map[string]any{"tenant": "globex", "key": "dashboards", "status": "forbidden", "http_status": 403})
	want(t, 4, recs[4], map[string]any{"tenant": "acme", "key": nil, "status": "unauthorized", "http_status": 401})
	want(t, 5, recs[5], map[string]any{"kind": "tables", "tenant": "acme", "sql": nil, "bytes": len(tablesBody), "status": "ok"})
	want(t, 6, recs[6], map[string]any{"kind": "status", "tenant": "globex", "key": "ops", "status": "ok"})
	for i, r := range recs {
		if _, err := time.Parse(time.RFC3339Nano, r["time"].(string)); err != nil || !strings.HasSuffix(r["time"].(string), "Z") {
			t.Errorf("record %d: time %v, want RFC 3339 in UTC", i, r["time"])
		}
		if d, ok := r["duration_ms"].(float64); !ok || d < 0 {
			t.Errorf("record %d: duration_ms %v", i, r["duration_ms"])
		}
		if r["remote"] == nil || r["request_id"] == nil {
			t.Errorf("record %d: no remote or request_id: %v", i, r)
		}
	}
}

// TestAuditSQLModes: sha256 keeps only the statement's digest and none
// keeps nothing of it; neither leaves the literals it quotes in the trail.
func TestAuditSQLModes(t *testing.T) {
	const q = "SELECT id FROM patient WHERE id <> 'Smith-secret'"
	for _, tc := range []struct {
		mode   audit.SQLMode
		digest any
	}{
		{audit.SQLSHA256, audit.SHA256(q)},
		{audit.SQLNone, nil},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			f, read := auditedServer(t, newFixture(t, Options{}, query.Options{}), tc.mode, Options{})
			if r, b := f.query(t, "acme", acmeKey, q); r.StatusCode != 200 {
				t.Fatalf("got %d: %s", r.StatusCode, b)
			}
			recs := read()
			if len(recs) != 1 {
				t.Fatalf("got %d records, want 1", len(recs))
			}
			want(t, 0, recs[0], map[string]any{"sql": nil, "sql_sha256": tc.digest, "rows": 2})
			if b, _ := json.Marshal(recs); strings.Contains(string(b), "Smith-secret") {
				t.Errorf("the trail holds the statement's literal: %s", b)
			}
		})
	}
}

// TestAuditRecordsTurnedAwayAndTimedOut: a request turned away by a full
// queue (429) and one stopped by the query timeout (504) are recorded with
// their codes.
func TestAuditRecordsTurnedAwayAndTimedOut(t *testing.T) {
	base := newFixture(t, Options{}, query.Options{})
	slow, readSlow := auditedServer(t, base, audit.SQLFull, Options{QueryTimeout: 300 * time.Millisecond})
	if r, b := slow.query(t, "acme", acmeKey, slowSQL); r.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("slow query: got %d: %s", r.StatusCode, b)
	}
	full, readFull := auditedServer(t, base, audit.SQLFull, Options{Forward: queueFull{}})
	if r, b := full.query(t, "acme", acmeKey, "SELECT 1"); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("full queue: got %d: %s", r.StatusCode, b)
	}
	recs := readSlow()
	if len(recs) != 1 {
		t.Fatalf("slow: got %d records, want 1", len(recs))
	}
	want(t, 0, recs[0], map[string]any{"sql": slowSQL, "status": "query_timeout", "http_status": 504})
	recs = readFull()
	if len(recs) != 1 {
		t.Fatalf("full: got %d records, want 1", len(recs))
	}
	want(t, 0, recs[0], map[string]any{"sql": "SELECT 1", "key": "dashboards", "status": "queue_full", "http_status": 429, "rows": 0})
}

// queueFull is a front whose tenants' queues are always full, as the
// worker supervisor answers when too many requests wait.
type queueFull struct{}

func (queueFull) Forward(http.ResponseWriter, *http.Request, string) error { return query.ErrQueueFull }
