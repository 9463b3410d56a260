package web

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fhirlake/query"
)

// gathered sums a metric family's values over its series (counters and
// gauges), 0 when it has none.
func (f *fixture) gathered(t *testing.T, name string) float64 {
	t.Helper()
	fams, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, fam := range fams {
		if fam.GetName() != name {
			continue
		}
		for _, m := range fam.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// opened reports whether the pool holds an open session of tenant.
func (f *fixture) opened(tenant string) bool {
	for _, st := range f.pool.Status() {
		if st.Tenant == tenant {
			return st.Open
		}
	}
	return false
}

// TestStatusNeedsKey: no route opens or builds a tenant's session without
// that tenant's key (or, for its status, an admin key); the status of every
// tenant needs an admin key, and is off without one configured.
func TestStatusNeedsKey(t *testing.T) {
	f := newFixture(t, Options{AdminKeys: admins}, query.Options{})
	for _, tc := range []struct {
		name, path, key string
		want            int
	}{
		{"tenant status without a key", "/v1/status/tenants/globex", "", 401},
		{"tenant status with an unknown key", "/v1/status/tenants/globex", "guess", 401},
		{"tenant status with another tenant's key", "/v1/status/tenants/globex", acmeKey, 403},
		{"status of a tenant that does not exist", "/v1/status/tenants/initech", acmeKey, 403},
		{"every tenant without a key", "/v1/status", "", 401},
		{"every tenant with a tenant's key", "/v1/status", acmeKey, 403},
		{"whoami without a key", "/v1/whoami", "", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := f.do(t, "GET", tc.path, tc.key, nil)
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, b, tc.want)
			}
			if strings.Contains(string(b), "patient") {
				t.Errorf("the refusal shows views: %s", b)
			}
		})
	}
	if f.opened("globex") || f.gathered(t, "fhirlake_query_view_builds_total") != 0 || f.gathered(t, "fhirlake_query_sessions") != 0 {
		t.Fatalf("a request without globex's key opened its session: open %v, %v view builds, %v sessions",
			f.opened("globex"), f.gathered(t, "fhirlake_query_view_builds_total"), f.gathered(t, "fhirlake_query_sessions"))
	}
	// An admin key opens the status pages, never a tenant's data.
	resp, b := f.query(t, "acme", adminKey, "SELECT 1")
	if resp.StatusCode != 403 {
		t.Fatalf("admin key on a query: got %d %s, want 403", resp.StatusCode, b)
	}
	if f.opened("acme") {
		t.Fatal("an admin key's query opened the tenant's session")
	}
	for _, tc := range []struct{ path, key string }{
		{"/v1/status/tenants/globex", globexKey},
		{"/v1/status/tenants/globex", adminKey},
		{"/v1/status", adminKey},
	} {
		if resp, b := f.do(t, "GET", tc.path, tc.key, nil); resp.StatusCode != 200 {
			t.Errorf("%s with its key: got %d %s, want 200", tc.path, resp.StatusCode, b)
		}
	}
	if !f.opened("globex") {
		t.Error("globex's own key did not open its session")
	}
	// whoami tells a key's holder what it opens.
	for key, want := range map[string]string{acmeKey: `"tenant": "acme"`, adminKey: `"admin": true`} {
		if resp, b := f.do(t, "GET", "/v1/whoami", key, nil); resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("whoami: got %d %s, want %s", resp.StatusCode, b, want)
		}
	}

	// Without admin keys the status of every tenant is off.
	off := newFixture(t, Options{}, query.Options{})
	for _, key := range []string{"", acmeKey, adminKey} {
		if resp, b := off.do(t, "GET", "/v1/status", key, nil); resp.StatusCode != 404 {
			t.Errorf("/v1/status without admin keys, key %q: got %d %s, want 404", key, resp.StatusCode, b)
		}
	}
}

// TestStatusShowsNoInternals: what the status routes show holds no
// absolute path, no internal SQL and no broker address, even when a
// tenant's lake is broken and Kafka unreachable.
func TestStatusShowsNoInternals(t *testing.T) {
	broker := errors.New("dial tcp 10.20.30.40:9092: connect: connection refused")
	f := newFixture(t, Options{AdminKeys: admins, Lag: func(context.Context) (*Lag, error) { return nil, broker }}, query.Options{})
	// A snapshot manifest that is not JSON: globex's views cannot be built.
	bad := filepath.Join(f.globex, "_manifest", "batch.json")
	if err := os.MkdirAll(filepath.Dir(bad), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, b := f.query(t, "globex", globexKey, "SELECT count(*) FROM patient")
	if resp.StatusCode != 503 {
		t.Fatalf("query over a broken lake: got %d %s, want 503", resp.StatusCode, b)
	}
	bodies := map[string][]byte{"query over a broken lake": b}
	for _, tc := range []struct{ path, key string }{
		{"/v1/status", adminKey},
		{"/v1/status/tenants/acme", acmeKey},
		{"/v1/status/tenants/globex", adminKey},
		{"/v1/tenants/acme/tables", acmeKey},
	} {
		_, b := f.do(t, "GET", tc.path, tc.key, nil)
		bodies[tc.path] = b
	}
	var st struct {
		Tenants []struct{ Tenant, Error string }
	}
	if err := json.Unmarshal(bodies["/v1/status"], &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Tenants) != 2 || st.Tenants[1].Tenant != "globex" || st.Tenants[1].Error == "" {
		t.Errorf("status: got %s, want globex's refresh marked failed", bodies["/v1/status"])
	}
	for what, b := range bodies {
		for _, leak := range []string{f.base, "CREATE", "read_parquet", "10.20.30.40", "batch.json"} {
			if strings.Contains(string(b), leak) {
				t.Errorf("%s shows %q:\n%s", what, leak, b)
			}
		}
	}
	// The server's log has what the responses leave out.
	if log := f.log.String(); !strings.Contains(log, "globex") || !strings.Contains(log, "manifest") {
		t.Errorf("the log lacks the failure's cause:\n%s", log)
	}
}

// TestMetricsTenantLabels: /metrics needs no key, so it names no tenant
// unless configured to.
func TestMetricsTenantLabels(t *testing.T) {
	for _, labels := range []bool{false, true} {
		f := newFixture(t, Options{TenantLabels: labels}, query.Options{})
		f.query(t, "acme", acmeKey, "SELECT count(*) FROM patient")
		f.query(t, "globex", globexKey, "SELECT count(*) FROM patient")
		f.query(t, "globex", "", "SELECT 1")
		_, b := f.do(t, "GET", "/metrics", "", nil)
		m := string(b)
		if !labels {
			for _, name := range []string{"acme", "globex"} {
				if strings.Contains(m, name) {
					t.Errorf("default /metrics names tenant %s", name)
				}
			}
			for _, want := range []string{
				`fhirlake_query_requests_total{route="query",status="200",tenant="*"} 2`,
				`fhirlake_query_requests_total{route="query",status="401",tenant="*"} 1`,
				`fhirlake_query_view_builds_total{tenant="*"} 2`,
			} {
				if !strings.Contains(m, want) {
					t.Errorf("default /metrics lacks %s", want)
				}
			}
			continue
		}
		for _, want := range []string{
			`fhirlake_query_requests_total{route="query",status="200",tenant="acme"} 1`,
			`fhirlake_query_requests_total{route="query",status="200",tenant="globex"} 1`,
			`fhirlake_query_view_builds_total{tenant="globex"} 1`,
		} {
			if !strings.Contains(m, want) {
				t.Errorf("/metrics with tenant labels lacks %s", want)
			}
		}
	}
}

// TestStatusListsUnreadableFiles: a file planted among acme's raw files is
// left out of the views, acme still gets its rows, and its status page
// names the file by key.
func TestStatusListsUnreadableFiles(t *testing.T) {
	f := newFixture(t, Options{}, query.Options{})
	bad := filepath.Join(f.acme, "speed", "resources", "date=2026-01-01", "t-0-0-9.parquet")
	if err := os.WriteFile(bad, []byte("not parquet"), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, b := f.query(t, "acme", acmeKey, "SELECT count(*) AS n FROM resources")
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"n":`) {
		t.Fatalf("query beside a planted file: got %d %s, want 200", resp.StatusCode, b)
	}
	resp, b = f.do(t, "GET", "/v1/status/tenants/acme", acmeKey, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"key": "speed/resources/date=2026-01-01/t-0-0-9.parquet"`) || strings.Contains(string(b), f.base) {
		t.Errorf("status: got %d %s, want the planted file by key", resp.StatusCode, b)
	}
}
