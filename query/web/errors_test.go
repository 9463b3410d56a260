package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fhirlake/query"
	"fhirlake/query/querytest"
)

// TestErrorsCarryRequestID: every error response has a request id, in its
// header and its body, a stable code and a message without server paths or
// other tenants' names; the log has the full error under the same id.
func TestErrorsCarryRequestID(t *testing.T) {
	f := newFixture(t, Options{}, query.Options{})
	g := filepath.Join(f.globex, "speed", "resources", "date=2026-01-01", "t-0-0-0.parquet")
	for _, tc := range []struct {
		name, tenant, key, sql string
		status                 int
		code                   string
		says                   []string // the message keeps what the tenant needs
		logs                   string   // the log has the full error
	}{
		{"a file of its own lake that is not there", "acme", acmeKey, fmt.Sprintf("SELECT * FROM read_parquet('%s/speed/nope.parquet')", f.acme),
			400, "statement_refused", []string{`table function "read_parquet" is not allowed`}, "read_parquet"},
		{"another tenant's file", "acme", acmeKey, fmt.Sprintf("SELECT * FROM read_parquet('%s')", g),
			400, "statement_refused", []string{`table function "read_parquet" is not allowed`}, "read_parquet"},
		{"a column that is not there", "acme", acmeKey, "SELECT nope FROM patient",
			400, "query_error", []string{`Binder Error: Referenced column "nope" not found`, "LINE 1: SELECT nope FROM patient"}, "Candidate bindings"},
		{"no key", "acme", "", "SELECT 1", 401, "unauthorized", nil, ""},
		{"another tenant's key", "globex", acmeKey, "SELECT 1", 403, "forbidden", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := f.query(t, tc.tenant, tc.key, tc.sql)
			var e apiError
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("not a JSON error: %s", b)
			}
			id := resp.Header.Get(RequestIDHeader)
			if resp.StatusCode != tc.status || e.Error.Code != tc.code {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, b, tc.status, tc.code)
			}
			if id == "" || e.Error.RequestID != id {
				t.Fatalf("request id: header %q, body %q; want the same, not empty", id, e.Error.RequestID)
			}
			for _, leak := range []string{f.base, "globex/", "t-0-0-0.parquet"} {
				if strings.Contains(string(b), leak) {
					t.Errorf("the response shows %q: %s", leak, b)
				}
			}
			for _, want := range tc.says {
				if !strings.Contains(e.Error.Message, want) {
					t.Errorf("message %q lacks %q", e.Error.Message, want)
				}
			}
			if tc.logs != "" && !strings.Contains(f.logged(t, id), tc.logs) {
				t.Errorf("the log lacks %q under request %s:\n%s", tc.logs, id, f.log.String())
			}
		})
	}
	// Every response has an id, the ids differ.
	r1, _ := f.do(t, "GET", "/nope", "", nil)
	r2, _ := f.do(t, "GET", "/healthz", "", nil)
	if a, b := r1.Header.Get(RequestIDHeader), r2.Header.Get(RequestIDHeader); a == "" || b == "" || a == b {
		t.Errorf("request ids %q and %q: want two different ones", a, b)
	}
}

// logged returns the error the server logged under a request id.
func (f *fixture) logged(t *testing.T, id string) string {
	t.Helper()
	for _, line := range strings.Split(f.log.String(), "\n") {
		var rec struct {
			RequestID string `json:"request_id"`
			Err       string `json:"err"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.RequestID == id && rec.Err != "" {
			return rec.Err
		}
	}
	return ""
}

// TestNoStatementIsRefused: a text without a statement is the client's
// mistake, 400, whatever words the query layer uses for it.
func TestNoStatementIsRefused(t *testing.T) {
	f := newFixture(t, Options{}, query.Options{})
	for _, q := range []string{"-- only a comment", "/* only a comment */", ";", "-- one\n-- two\n"} {
		resp, b := f.do(t, "POST", "/v1/tenants/acme/query", acmeKey, strings.NewReader(q), "Content-Type", "text/plain")
		if r := decode(t, b); resp.StatusCode != http.StatusBadRequest || r.Error == nil || r.Error.Message == "" {
			t.Errorf("%q: got %d %s, want 400 with a message", q, resp.StatusCode, b)
		}
	}
}

func TestScrub(t *testing.T) {
	root := rootPattern("/srv/lake/acme")
	for _, tc := range []struct{ name, msg, sql, want string }{
		{"own lake", `IO Error: No files found that match the pattern "/srv/lake/acme/speed/x.parquet"`, "",
			`IO Error: No files found that match the pattern "<lake>/speed/x.parquet"`},
		{"a sibling is not the lake", `Permission Error: Cannot access file "/srv/lake/acme2/x.parquet"`, "",
			`Permission Error: Cannot access file "<path>"`},
		{"a list of paths", `Invalid Input Error: File '/srv/lake/globex/a.parquet' and ['/tmp/b/c', '/srv/lake/acme']`, "",
			`Invalid Input Error: File '<path>' and ['<path>', '<lake>']`},
		{"the tenant's own statement is quoted", "Binder Error: Referenced column \"x\" not found\n\nLINE 1: SELECT x FROM patient\n               ^",
			"SELECT x FROM patient", "Binder Error: Referenced column \"x\" not found\n\nLINE 1: SELECT x FROM patient\n               ^"},
		{"a view's definition is not", "Binder Error: something\n\nLINE 1: SELECT * FROM read_parquet(['/srv/lake/acme/speed/...\n                      ^",
			"SELECT * FROM patient", "Binder Error: something"},
		{"a truncated quote of the tenant's statement", "Parser Error: syntax error\n\nLINE 1: ...FROM patient WHERE\n                      ^",
			"SELECT a, b, c, d FROM patient WHERE", "Parser Error: syntax error\n\nLINE 1: ...FROM patient WHERE\n                      ^"},
		{"arithmetic is no path", "Binder Error: no function a / b or 10/2", "", "Binder Error: no function a / b or 10/2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := scrub(tc.msg, tc.sql, root); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestAViewThatCannotBeMadeIs503: a session makes a view when a statement
// first names it; when the lake's files are gone by then, the statement
// gets 503 lake_unavailable without paths (the log has the cause), and
// once the files are back the same statement answers.
func TestAViewThatCannotBeMadeIs503(t *testing.T) {
	f := newPoolFixture(t, Options{}, query.PoolOptions{RefreshInterval: time.Hour})
	// Three files, so that their failing together reads as a store that
	// cannot be read rather than as bad files to set aside.
	querytest.WriteRaw(t, f.acme, "acme", "t-0-3-3", []querytest.Row{{Type: "Patient", ID: "a3", Version: "1", Op: "upsert", Offset: 3}})
	querytest.WriteRaw(t, f.acme, "acme", "t-0-4-4", []querytest.Row{{Type: "Patient", ID: "a4", Version: "1", Op: "upsert", Offset: 4}})
	if resp, b := f.query(t, "acme", acmeKey, "SELECT 1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the session's first statement: got %d %s", resp.StatusCode, b)
	}
	speed := filepath.Join(f.acme, "speed", "resources")
	if err := os.Rename(speed, speed+".away"); err != nil {
		t.Fatal(err)
	}
	resp, b := f.query(t, "acme", acmeKey, "SELECT count(*) AS n FROM patient")
	var e apiError
	if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != http.StatusServiceUnavailable || e.Error.Code != "lake_unavailable" {
		t.Fatalf("a view over files gone: got %d %s, want 503 lake_unavailable", resp.StatusCode, b)
	}
	if strings.Contains(string(b), f.base) || strings.Contains(string(b), "CREATE") {
		t.Errorf("the response shows the server's internals: %s", b)
	}
	if !strings.Contains(f.logged(t, e.Error.RequestID), "could not be made") {
		t.Errorf("the log lacks the cause under request %s:\n%s", e.Error.RequestID, f.log.String())
	}
	if err := os.Rename(speed+".away", speed); err != nil {
		t.Fatal(err)
	}
	if resp, b := f.query(t, "acme", acmeKey, "SELECT count(*) AS n FROM patient"); resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"n":4`) {
		t.Errorf("once the files are back: got %d %s, want 200 with n 4", resp.StatusCode, b)
	}
}

// TestCanceledWhileTheViewsAreMade: a request canceled (its client gone,
// or a Flight client's CancelFlightInfo) while its session opens or makes
// its views is answered as canceled, not as a lake that cannot be read:
// DuckDB's "Interrupted" of a view being made is the cancel's doing.
func TestCanceledWhileTheViewsAreMade(t *testing.T) {
	// What the views being made fail with when DuckDB is interrupted.
	interrupted := fmt.Errorf("tenant acme: %w: %w", query.ErrViewsNotMade, errors.New("INTERRUPT Error: Interrupted!"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequestWithContext(ctx, "POST", "/v1/tenants/acme/query", nil)
	if status, code := classifyRequest(r, interrupted); status != statusClientClosed || code != "canceled" {
		t.Errorf("a canceled request whose views failed: %d %s, want %d canceled", status, code, statusClientClosed)
	}
	if status, code := classifyRequest(r.WithContext(context.Background()), interrupted); code != "lake_unavailable" {
		t.Errorf("views that failed on their own: %d %s, want lake_unavailable", status, code)
	}
}

// TestDescribeCanceledWhileTheViewsAreMade: listing the tables of a request
// canceled while its views were made is answered canceled, not as a lake
// that cannot be read; views that failed on their own still are.
func TestDescribeCanceledWhileTheViewsAreMade(t *testing.T) {
	interrupted := fmt.Errorf("tenant acme: %w: %w", query.ErrViewsNotMade, errors.New("INTERRUPT Error: Interrupted!"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequestWithContext(ctx, "GET", "/v1/tenants/acme/tables", nil)
	if status, code := classifyDescribe(r, interrupted); status != statusClientClosed || code != "canceled" {
		t.Errorf("a canceled request whose views failed: %d %s, want %d canceled", status, code, statusClientClosed)
	}
	live := r.WithContext(context.Background())
	if status, code := classifyDescribe(live, interrupted); status != http.StatusServiceUnavailable || code != "lake_unavailable" {
		t.Errorf("views that failed on their own: %d %s, want 503 lake_unavailable", status, code)
	}
	if status, code := classifyDescribe(live, errors.New("catalog: broken")); status != http.StatusInternalServerError || code != "describe_failed" {
		t.Errorf("another failure: %d %s, want 500 describe_failed", status, code)
	}
}
