package web

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/duckdb/duckdb-go/v2"
	"github.com/prometheus/client_golang/prometheus"

	"fhirlake/config"
	"fhirlake/query"
	"fhirlake/query/querytest"
)

const (
	acmeKey   = "acme-secret-key"
	globexKey = "globex-secret-key"
	adminKey  = "ops-admin-key"
)

// admins opens the status of every tenant to adminKey.
var admins = []AdminKey{{SHA256: config.HashAPIKey(adminKey), Name: "ops"}}

type fixture struct {
	base, acme, globex string
	srv                *httptest.Server
	reg                *prometheus.Registry
	pool               *query.Pool
	log                *lockedBuffer // the server's log, as JSON lines
}

// lockedBuffer is a bytes.Buffer that handlers may write concurrently.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newFixture serves two tenants, acme and globex, each with a lake of its
// own, next to a third directory acme2 that no tenant owns.
func newFixture(t *testing.T, o Options, so query.Options) *fixture {
	t.Helper()
	return newPoolFixture(t, o, query.PoolOptions{Session: so})
}

// newPoolFixture is newFixture with the pool's options: its metrics go to
// the same registry, and its tenant labels follow o's.
func newPoolFixture(t *testing.T, o Options, po query.PoolOptions) *fixture {
	t.Helper()
	f := &fixture{base: t.TempDir(), log: &lockedBuffer{}}
	f.acme = filepath.Join(f.base, "acme")
	f.globex = filepath.Join(f.base, "globex")
	querytest.WriteRaw(t, f.acme, "acme", "t-0-0-2", []querytest.Row{
		{Type: "Patient", ID: "a1", Version: "1", Op: "upsert", Offset: 0},
		{Type: "Patient", ID: "a1", Version: "2", Op: "upsert", Offset: 1},
		{Type: "Patient", ID: "a2", Version: "1", Op: "upsert", Offset: 2},
	})
	querytest.WriteRaw(t, f.globex, "globex", "t-0-0-0", []querytest.Row{{Type: "Patient", ID: "g-secret", Version: "1", Op: "upsert", Offset: 0}})
	querytest.WriteRaw(t, filepath.Join(f.base, "acme2"), "acme2", "t-0-0-0", []querytest.Row{{Type: "Patient", ID: "x-secret", Version: "1", Op: "upsert", Offset: 0}})
	if err := os.Symlink(f.globex, filepath.Join(f.acme, "link")); err != nil {
		t.Fatal(err)
	}
	// A symlinked file, too: a view of the globex file from inside acme's lake.
	gfile := filepath.Join(f.globex, "speed", "resources", "date=2026-01-01", "t-0-0-0.parquet")
	if err := os.Symlink(gfile, filepath.Join(f.acme, "globex.parquet")); err != nil {
		t.Fatal(err)
	}
	f.reg = prometheus.NewRegistry()
	if po.RefreshInterval == 0 {
		po.RefreshInterval = time.Millisecond
	}
	po.TenantLabels = o.TenantLabels
	f.pool = query.NewPool([]query.Lake{{Tenant: "acme", Root: f.acme}, {Tenant: "globex", Root: f.globex}}, po, f.reg, nil)
	t.Cleanup(func() { f.pool.Close() })
	o.Keys = []Key{{Tenant: "acme", SHA256: config.HashAPIKey(acmeKey)}, {Tenant: "globex", SHA256: config.HashAPIKey(globexKey)}}
	o.Gatherer = f.reg
	log := slog.New(slog.NewJSONHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := New(f.pool, o, f.reg, log)
	f.srv = httptest.NewServer(s.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

// reply is what the tests read of a response besides its body, which do
// reads in full and closes.
type reply struct {
	StatusCode int
	Header     http.Header
	Trailer    http.Header // complete once the body has been read
}

func (f *fixture) do(t *testing.T, method, path, key string, body io.Reader, hdr ...string) (reply, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{StatusCode: resp.StatusCode, Header: resp.Header, Trailer: resp.Trailer}, b
}

func (f *fixture) query(t *testing.T, tenant, key, sql string, hdr ...string) (reply, []byte) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"sql": sql})
	return f.do(t, "POST", "/v1/tenants/"+tenant+"/query", key, bytes.NewReader(body), append([]string{"Content-Type", "application/json"}, hdr...)...)
}

type result struct {
	Columns []struct{ Name, Type string }
	Rows    []map[string]any
	Count   int  `json:"row_count"`
	Cut     bool `json:"truncated"`
	Error   *struct{ Code, Message string }
}

func decode(t *testing.T, b []byte) result {
	t.Helper()
	var r result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("response is not JSON: %v\n%s", err, b)
	}
	return r
}

func TestQueryJSON(t *testing.T) {
	f := newFixture(t, Options{}, query.Options{})
	resp, b := f.query(t, "acme", acmeKey, "SELECT id, version_id FROM patient ORDER BY id")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	r := decode(t, b)
	if r.Count != 2 || len(r.Rows) != 2 || r.Rows[0]["id"] != "a1" || r.Rows[0]["version_id"] != "2" || r.Cut {
		t.Fatalf("got %s, want a1 v2 and a2", b)
	}
	if got := r.Columns[0].Name + ":" + r.Columns[0].Type; got != "id:VARCHAR" {
		t.Errorf("first column: got %s, want id:VARCHAR", got)
	}
	// text/plain works too.
	resp, b = f.do(t, "POST", "/v1/tenants/acme/query", acmeKey, strings.NewReader("SELECT count(*) AS n FROM patient"), "Content-Type", "text/plain")
	if resp.StatusCode != 200 || decode(t, b).Rows[0]["n"] != float64(2) {
		t.Fatalf("text/plain: status %d: %s", resp.StatusCode, b)
	}
}

func TestAuth(t *testing.T) {
	f := newFixture(t, Options{}, query.Options{})
	for _, tc := range []struct {
		name, tenant, key string
		want              int
		code              string
	}{
		{"no key", "acme", "", 401, "unauthorized"},
		{"unknown key", "acme", "guess", 401, "unauthorized"},
		{"hash as key", "acme", config.HashAPIKey(acmeKey), 401, "unauthorized"},
		{"other tenant's key", "globex", acmeKey, 403, "forbidden"},
		{"key for a tenant that does not exist", "initech", acmeKey, 403, "forbidden"},
		{"own key", "acme", acmeKey, 200, ""},
		{"globex's own key", "globex", globexKey, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := f.query(t, tc.tenant, tc.key, "SELECT count(*) FROM patient")
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			if tc.code != "" {
				if r := decode(t, b); r.Error == nil || r.Error.Code != tc.code {
					t.Fatalf("got %s, want error code %s", b, tc.code)
				}
			}
			resp, _ = f.do(t, "GET", "/v1/tenants/"+tc.tenant+"/tables", tc.key, nil)
			if resp.StatusCode != tc.want {
				t.Fatalf("tables: got %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	// X-API-Key works like the bearer token.
	resp, b := f.do(t, "POST", "/v1/tenants/acme/query", "", strings.NewReader("SELECT 1"), "Content-Type", "text/plain", "X-API-Key", acmeKey)
	if resp.StatusCode != 200 {
		t.Fatalf("X-API-Key: got %d: %s", resp.StatusCode, b)
	}
}

// TestIsolation: acme's key reaches acme's data only, whichever way the SQL
// tries to reach another tenant's files, and nothing it sends changes the
// session for later requests. Each case is one route through the HTTP API.
func TestIsolation(t *testing.T) {
	f := newFixture(t, Options{}, query.Options{})
	g := filepath.Join(f.globex, "speed", "resources", "date=2026-01-01", "t-0-0-0.parquet")
	for name, q := range map[string]string{
		"absolute path":              fmt.Sprintf("SELECT * FROM read_parquet('%s')", g),
		"replacement scan":           fmt.Sprintf("SELECT * FROM '%s'", g),
		"dot-dot":                    fmt.Sprintf("SELECT * FROM read_parquet('%s/../globex/speed/resources/*/*.parquet')", f.acme),
		"sibling prefix":             fmt.Sprintf("SELECT * FROM read_parquet('%s2/speed/resources/*/*.parquet')", f.acme),
		"glob over tenants":          fmt.Sprintf("SELECT * FROM read_parquet('%s/*/speed/resources/*/*.parquet')", f.base),
		"recursive glob":             fmt.Sprintf("SELECT * FROM read_parquet('%s/**/*.parquet')", f.base),
		"symlinked directory":        fmt.Sprintf("SELECT * FROM read_parquet('%s/link/speed/resources/*/*.parquet')", f.acme),
		"symlinked file":             fmt.Sprintf("SELECT * FROM read_parquet('%s/globex.parquet')", f.acme),
		"glob listing":               fmt.Sprintf("SELECT * FROM glob('%s/*')", f.base),
		"read_text":                  "SELECT * FROM read_text('/etc/passwd')",
		"read_blob":                  fmt.Sprintf("SELECT * FROM read_blob('%s')", g),
		"s3 url of another bucket":   "SELECT * FROM read_parquet('s3://fhirlake-globex/speed/resources/*/*.parquet')",
		"http url":                   "SELECT * FROM read_parquet('http://127.0.0.1:17070/fhirlake-globex/speed/resources/x.parquet')",
		"attach":                     fmt.Sprintf("ATTACH '%s/x.duckdb'", f.base),
		"attach in memory":           "ATTACH ':memory:' AS m",
		"load":                       "LOAD httpfs",
		"install":                    "INSTALL httpfs",
		"copy out":                   fmt.Sprintf("COPY (SELECT 1) TO '%s/out.csv'", f.base),
		"copy into own lake":         fmt.Sprintf("COPY (SELECT 1) TO '%s/speed/resources/date=2026-01-01/evil.parquet'", f.acme),
		"copy then select":           fmt.Sprintf("COPY (SELECT 1) TO '%s/speed/out.csv'; SELECT 1", f.acme),
		"widen directories":          fmt.Sprintf("SET allowed_directories = ['%s']", f.base),
		"enable access":              "SET enable_external_access = true",
		"unlock":                     "SET lock_configuration = false",
		"reset":                      "RESET allowed_directories",
		"set through a select":       "SELECT set_config('enable_external_access', 'true', false)",
		"drop a view":                "DROP VIEW patient",
		"replace a view then select": fmt.Sprintf("CREATE OR REPLACE VIEW patient AS SELECT * FROM read_parquet('%s'); SELECT 1", g),
		"pragma setting":             "PRAGMA threads = 8",
		"call":                       "CALL pragma_version()",
		"explain analyze":            "EXPLAIN ANALYZE SELECT 1",
		"query() with ddl":           "SELECT * FROM query('CREATE TABLE t AS SELECT 1')",
		"secrets":                    "SELECT * FROM duckdb_secrets()",
	} {
		t.Run(name, func(t *testing.T) {
			resp, b := f.query(t, "acme", acmeKey, q)
			if resp.StatusCode == 200 {
				t.Fatalf("%s: got 200 and %s, want a refusal", q, b)
			}
			if r := decode(t, b); r.Error == nil || r.Error.Message == "" {
				t.Fatalf("got %s, want a JSON error with a message", b)
			}
			if strings.Contains(string(b), "g-secret") || strings.Contains(string(b), "x-secret") {
				t.Fatalf("response leaks another tenant's data: %s", b)
			}
		})
	}
	// Nothing was written, and the views are intact for the next request.
	if _, err := os.Stat(filepath.Join(f.acme, "speed", "out.csv")); err == nil {
		t.Error("a COPY wrote into the tenant's lake")
	}
	resp, b := f.query(t, "acme", acmeKey, "SELECT count(*) AS n FROM patient")
	if resp.StatusCode != 200 || decode(t, b).Rows[0]["n"] != float64(2) {
		t.Fatalf("after the refusals: status %d: %s", resp.StatusCode, b)
	}
	// Reading the session's settings is refused too: they name server paths
	// (query.TestSandboxOnEveryConnection checks them on every connection).
	resp, b = f.query(t, "acme", acmeKey, "SELECT current_setting('enable_external_access') AS e")
	if resp.StatusCode != 400 || decode(t, b).Error.Code != "statement_refused" {
		t.Fatalf("settings: got %d %s, want 400 statement_refused", resp.StatusCode, b)
	}
}

func TestFormats(t *testing.T) {
	f := newFixture(t, Options{}, query.Options{})
	q := "SELECT id, version_id, last_updated FROM patient ORDER BY id"
	t.Run("csv", func(t *testing.T) {
		resp, b := f.query(t, "acme", acmeKey, q, "Accept", "text/csv")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/csv" {
			t.Fatalf("status %d, type %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if got := strings.Split(strings.TrimSpace(string(b)), "\n"); len(got) != 3 || got[0] != "id,version_id,last_updated" || !strings.HasPrefix(got[1], "a1,2,") {
			t.Fatalf("got %q", b)
		}
	})
	t.Run("arrow", func(t *testing.T) {
		resp, b := f.query(t, "acme", acmeKey, q, "Accept", "application/vnd.apache.arrow.stream")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		r, err := ipc.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Release()
		n := int64(0)
		for r.Next() {
			n += r.RecordBatch().NumRows()
		}
		if n != 2 || r.Schema().Field(0).Name != "id" {
			t.Fatalf("got %d rows, schema %s", n, r.Schema())
		}
	})
	t.Run("parquet", func(t *testing.T) {
		resp, b := f.query(t, "acme", acmeKey, q, "Accept", "application/vnd.apache.parquet")
		if resp.StatusCode != 200 || !bytes.HasPrefix(b, []byte("PAR1")) || !bytes.HasSuffix(b, []byte("PAR1")) {
			t.Fatalf("status %d, %d bytes: not a Parquet file", resp.StatusCode, len(b))
		}
		if got := parquetRows(t, b); got != 2 {
			t.Fatalf("got %d rows, want 2", got)
		}
	})
	t.Run("format parameter", func(t *testing.T) {
		body, _ := json.Marshal(map[string]string{"sql": q})
		resp, b := f.do(t, "POST", "/v1/tenants/acme/query?format=csv", acmeKey, bytes.NewReader(body), "Content-Type", "application/json", "Accept", "application/json")
		if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "id,") {
			t.Fatalf("got %d %q", resp.StatusCode, b)
		}
	})
	t.Run("not acceptable", func(t *testing.T) {
		resp, b := f.query(t, "acme", acmeKey, q, "Accept", "application/xml")
		if resp.StatusCode != 406 {
			t.Fatalf("got %d %s, want 406", resp.StatusCode, b)
		}
	})
	t.Run("error before output is JSON", func(t *testing.T) {
		resp, b := f.query(t, "acme", acmeKey, "SELECT nope FROM patient", "Accept", "text/csv")
		if resp.StatusCode != 400 || decode(t, b).Error.Code != "query_error" {
			t.Fatalf("got %d %s", resp.StatusCode, b)
		}
	})
}

func parquetRows(t *testing.T, b []byte) int {
	t.Helper()
	p := filepath.Join(t.TempDir(), "r.parquet")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM read_parquet('" + p + "')").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestResultBytesCut: a result of 100 MB of text stops near the byte limit
// in every format, and says so.
func TestResultBytesCut(t *testing.T) {
	const limit = 256 << 10
	f := newFixture(t, Options{MaxResultBytes: limit}, query.Options{})
	sql := "SELECT i, repeat('x', 1000) AS pad FROM range(100000) t(i)"
	for _, accept := range []string{"application/json", "text/csv", "application/vnd.apache.arrow.stream", "application/vnd.apache.parquet"} {
		t.Run(accept, func(t *testing.T) {
			resp, b := f.query(t, "acme", acmeKey, sql, "Accept", accept)
			if resp.StatusCode != 200 {
				t.Fatalf("got %d %s", resp.StatusCode, b)
			}
			if got := resp.Header.Get("Fhirlake-Byte-Limit"); got != strconv.Itoa(limit) {
				t.Errorf("Fhirlake-Byte-Limit %q", got)
			}
			// One buffer or one batch's rows past the limit at most; the
			// Parquet file compresses the padding.
			if len(b) > 2*limit || len(b) < 1000 {
				t.Errorf("%d bytes for a limit of %d", len(b), limit)
			}
			cut := resp.Trailer.Get("Fhirlake-Truncated") == "true"
			if accept == "application/json" {
				r := decode(t, b)
				cut = r.Cut
				if r.Count == 0 || r.Count >= 100000 {
					t.Errorf("%d rows", r.Count)
				}
			}
			if !cut {
				t.Errorf("not marked truncated (trailer %v)", resp.Trailer)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	f := newFixture(t, Options{MaxRequestBytes: 1024, MaxResultRows: 5}, query.Options{QueryTimeout: 300 * time.Millisecond})
	t.Run("body too large", func(t *testing.T) {
		resp, b := f.query(t, "acme", acmeKey, "SELECT '"+strings.Repeat("x", 2000)+"'")
		if resp.StatusCode != 413 {
			t.Fatalf("got %d %s, want 413", resp.StatusCode, b)
		}
	})
	t.Run("rows cut", func(t *testing.T) {
		resp, b := f.query(t, "acme", acmeKey, "SELECT * FROM range(100)")
		if r := decode(t, b); resp.StatusCode != 200 || r.Count != 5 || !r.Cut {
			t.Fatalf("got %d %s, want 5 rows and truncated", resp.StatusCode, b)
		}
		resp, _ = f.query(t, "acme", acmeKey, "SELECT * FROM range(100)", "Accept", "text/csv")
		if resp.Trailer.Get("Fhirlake-Truncated") != "true" {
			t.Fatalf("csv: trailer %v, want Fhirlake-Truncated: true", resp.Trailer)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		resp, b := f.query(t, "acme", acmeKey, "SELECT count(*) FROM range(10000000000) a")
		if resp.StatusCode != 504 || decode(t, b).Error.Code != "query_timeout" {
			t.Fatalf("got %d %s, want 504 query_timeout", resp.StatusCode, b)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %s; the query was not interrupted", d)
		}
		// The session still answers.
		if resp, b := f.query(t, "acme", acmeKey, "SELECT 1 AS x"); resp.StatusCode != 200 {
			t.Fatalf("after the timeout: %d %s", resp.StatusCode, b)
		}
	})
	t.Run("bad bodies", func(t *testing.T) {
		for _, tc := range []struct {
			ct, body string
			want     int
		}{
			{"application/json", `{"sql": 1}`, 400},
			{"application/json", `{"query": "SELECT 1"}`, 400},
			{"application/json", `{"sql": "  "}`, 400},
			{"application/xml", `<sql/>`, 415},
		} {
			resp, b := f.do(t, "POST", "/v1/tenants/acme/query", acmeKey, strings.NewReader(tc.body), "Content-Type", tc.ct)
			if resp.StatusCode != tc.want || decode(t, b).Error == nil {
				t.Errorf("%s %s: got %d %s, want %d", tc.ct, tc.body, resp.StatusCode, b, tc.want)
			}
		}
	})
}

func TestTablesAndStatus(t *testing.T) {
	f := newFixture(t, Options{AdminKeys: admins, Lag: func(context.Context) (*Lag, error) { return &Lag{Group: "g", Total: 7}, nil }}, query.Options{})
	resp, b := f.do(t, "GET", "/v1/tenants/acme/tables", acmeKey, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var tables struct {
		Tenant string
		Tables []query.TableInfo
	}
	if err := json.Unmarshal(b, &tables); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tb := range tables.Tables {
		if tb.Name == "patient" {
			found = true
			if tb.Freshness.LastUpdated == nil || tb.Freshness.IngestTime == nil || len(tb.Columns) == 0 {
				t.Errorf("patient: got %+v, want columns and freshness", tb)
			}
			if want := time.Date(2026, 1, 1, 0, 1, 2, 0, time.UTC); !tb.Freshness.IngestTime.Equal(want) {
				t.Errorf("patient freshness: got %s, want %s", tb.Freshness.IngestTime, want)
			}
		}
	}
	if !found {
		t.Fatalf("no patient view in %s", b)
	}
	resp, b = f.do(t, "GET", "/v1/status", adminKey, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"tenant": "acme"`) || !strings.Contains(string(b), `"total": 7`) {
		t.Fatalf("status: %d %s", resp.StatusCode, b)
	}
	for _, key := range []string{globexKey, adminKey} {
		resp, b = f.do(t, "GET", "/v1/status/tenants/globex", key, nil)
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"name": "patient"`) || strings.Contains(string(b), "g-secret") {
			t.Fatalf("tenant status: %d %s", resp.StatusCode, b)
		}
	}
	resp, _ = f.do(t, "GET", "/v1/status/tenants/initech", adminKey, nil)
	if resp.StatusCode != 404 {
		t.Fatalf("unknown tenant status: got %d, want 404", resp.StatusCode)
	}
}

func TestMetricsAndOpenAPI(t *testing.T) {
	f := newFixture(t, Options{TenantLabels: true}, query.Options{})
	f.query(t, "acme", acmeKey, "SELECT * FROM patient")
	f.query(t, "acme", "", "SELECT 1")
	resp, b := f.do(t, "GET", "/metrics", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	for _, want := range []string{
		`fhirlake_query_requests_total{route="query",status="200",tenant="acme"} 1`,
		`fhirlake_query_requests_total{route="query",status="401",tenant="acme"} 1`,
		`fhirlake_query_rows_total{tenant="acme"} 2`,
		`fhirlake_query_duration_seconds_count{tenant="acme"} 2`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	resp, b = f.do(t, "GET", "/openapi.json", "", nil)
	var doc struct {
		OpenAPI string                     `json:"openapi"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || resp.StatusCode != 200 {
		t.Fatalf("openapi: %d %v", resp.StatusCode, err)
	}
	if doc.OpenAPI != "3.1.0" || doc.Paths["/v1/tenants/{tenant}/query"] == nil || doc.Paths["/v1/tenants/{tenant}/tables"] == nil {
		t.Fatalf("openapi: version %s, paths %d", doc.OpenAPI, len(doc.Paths))
	}
	resp, b = f.do(t, "GET", "/healthz", "", nil)
	if resp.StatusCode != 200 || string(b) != "ok\n" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, b)
	}
	resp, b = f.do(t, "GET", "/nope", "", nil)
	if resp.StatusCode != 404 || decode(t, b).Error.Code != "not_found" {
		t.Fatalf("unknown path: %d %s", resp.StatusCode, b)
	}
}
