package web

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"fhirlake/lake"
	"fhirlake/query"
)

// completeness is what the tests read of a route's completeness.
type completeness struct {
	State             string     `json:"state"`
	CompleteThrough   *time.Time `json:"complete_through"`
	Checked           *time.Time `json:"checked"`
	SnapshotWatermark *time.Time `json:"snapshot_watermark"`
	Error             string     `json:"error"`
}

// fixedCompleteness reads acme complete through acmeAt and globex through
// globexAt, checked at checked.
func fixedCompleteness(checked, acmeAt, globexAt time.Time) CompletenessFunc {
	return func() Completeness {
		return Completeness{Checked: checked, Through: map[string]time.Time{"acme": acmeAt, "globex": globexAt}}
	}
}

// tenantRoutes reads the completeness of /tables and of the tenant's
// status, with the tenant's key, and the header of each response.
func (f *fixture) tenantRoutes(t *testing.T, tenant, key string) map[string]struct {
	c      completeness
	header string
} {
	t.Helper()
	out := map[string]struct {
		c      completeness
		header string
	}{}
	for _, path := range []string{"/v1/tenants/" + tenant + "/tables", "/v1/status/tenants/" + tenant} {
		resp, b := f.do(t, "GET", path, key, nil, CompleteThroughHeader, "2099-01-01T00:00:00Z")
		if resp.StatusCode != 200 {
			t.Fatalf("%s: got %d %s", path, resp.StatusCode, b)
		}
		var body struct {
			Completeness completeness `json:"completeness"`
		}
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("%s: %v: %s", path, err, b)
		}
		out[path] = struct {
			c      completeness
			header string
		}{body.Completeness, resp.Header.Get(CompleteThroughHeader)}
	}
	return out
}

// TestCompletenessOnTenantRoutes: /tables and the status routes show the
// time through which the tenant's lake is complete and when Kafka was read,
// every tenant response carries it in a header, and a client cannot set it.
func TestCompletenessOnTenantRoutes(t *testing.T) {
	checked := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	acmeAt, globexAt := checked.Add(-90*time.Second), checked.Add(-time.Hour)
	f := newFixture(t, Options{AdminKeys: admins, Completeness: fixedCompleteness(checked, acmeAt, globexAt)}, query.Options{})
	for path, got := range f.tenantRoutes(t, "acme", acmeKey) {
		c := got.c
		if c.State != "ok" || c.CompleteThrough == nil || !c.CompleteThrough.Equal(acmeAt) || c.Checked == nil || !c.Checked.Equal(checked) {
			t.Errorf("%s: got %+v, want ok through %s checked %s", path, c, acmeAt, checked)
		}
		if c.SnapshotWatermark != nil {
			t.Errorf("%s: snapshot watermark %s without a snapshot", path, c.SnapshotWatermark)
		}
		if got.header != acmeAt.Format(time.RFC3339Nano) {
			t.Errorf("%s: header %s = %q, want %s", path, CompleteThroughHeader, got.header, acmeAt.Format(time.RFC3339Nano))
		}
	}
	resp, b := f.query(t, "acme", acmeKey, "SELECT 1 AS x")
	if resp.StatusCode != 200 || resp.Header.Get(CompleteThroughHeader) != acmeAt.Format(time.RFC3339Nano) || resp.Header.Get(CompleteCheckedHeader) != checked.Format(time.RFC3339Nano) {
		t.Errorf("query: got %d %s with completeness headers %q, %q", resp.StatusCode, b, resp.Header.Get(CompleteThroughHeader), resp.Header.Get(CompleteCheckedHeader))
	}
	// A refused request says nothing of the tenant.
	if resp, _ := f.query(t, "globex", acmeKey, "SELECT 1"); resp.Header.Get(CompleteThroughHeader) != "" {
		t.Errorf("a refused request carries %s: %q", CompleteThroughHeader, resp.Header.Get(CompleteThroughHeader))
	}

	// The status of every tenant, with globex's snapshot watermark.
	watermark := checked.Add(-24 * time.Hour)
	writeManifest(t, f.globex, watermark)
	_, b = f.do(t, "GET", "/v1/status", adminKey, nil)
	var st struct {
		Tenants []struct {
			Tenant       string       `json:"tenant"`
			Completeness completeness `json:"completeness"`
		} `json:"tenants"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{"acme": acmeAt, "globex": globexAt}
	for _, tn := range st.Tenants {
		c := tn.Completeness
		if c.State != "ok" || c.CompleteThrough == nil || !c.CompleteThrough.Equal(want[tn.Tenant]) {
			t.Errorf("/v1/status, %s: got %+v, want through %s", tn.Tenant, c, want[tn.Tenant])
		}
		if hasWM := c.SnapshotWatermark != nil && c.SnapshotWatermark.Equal(watermark); hasWM != (tn.Tenant == "globex") {
			t.Errorf("/v1/status, %s: snapshot watermark %v, want %s for globex only", tn.Tenant, c.SnapshotWatermark, watermark)
		}
	}
	if len(st.Tenants) != 2 {
		t.Errorf("/v1/status: got %s, want both tenants", b)
	}
}

// writeManifest publishes a snapshot manifest in root's lake (its model's
// file need not exist for the status of every tenant, which reads
// manifests only).
func writeManifest(t *testing.T, root string, watermark time.Time) {
	t.Helper()
	m := lake.Manifest{Version: 1, Tenant: filepath.Base(root), SnapshotID: "20260301T000000Z-abcdef", Created: watermark,
		Watermark: lake.Watermark{Modified: watermark},
		Models:    map[string]lake.Model{"patients": {Rows: 1, Files: []string{"batch/20260301T000000Z-abcdef/patients/data_0.parquet"}}}}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, filepath.FromSlash(lake.ManifestKey))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCompletenessUnknown: while Kafka cannot be read the routes say
// "unknown" and show no time, and the metric has no series; without Kafka
// configured they say so and send no header.
func TestCompletenessUnknown(t *testing.T) {
	down := newFixture(t, Options{Completeness: func() Completeness { return Completeness{} }}, query.Options{})
	for path, got := range down.tenantRoutes(t, "acme", acmeKey) {
		if got.c.State != "unknown" || got.c.CompleteThrough != nil || got.c.Checked != nil || !strings.Contains(got.c.Error, "cannot be read") {
			t.Errorf("kafka down, %s: got %+v, want unknown and no time", path, got.c)
		}
		if got.header != "unknown" {
			t.Errorf("kafka down, %s: header %q, want unknown", path, got.header)
		}
	}
	if _, b := down.do(t, "GET", "/metrics", "", nil); strings.Contains(string(b), "fhirlake_lake_complete_through_seconds{") {
		t.Errorf("kafka down: /metrics has a completeness series:\n%s", b)
	}
	none := newFixture(t, Options{}, query.Options{})
	for path, got := range none.tenantRoutes(t, "acme", acmeKey) {
		if got.c.State != "unknown" || got.c.CompleteThrough != nil || got.c.Error != errKafkaNotConfigured {
			t.Errorf("no kafka, %s: got %+v, want unknown: %s", path, got.c, errKafkaNotConfigured)
		}
		if got.header != "" {
			t.Errorf("no kafka, %s: header %q (the client's), want none", path, got.header)
		}
	}
}

// TestCompletenessFromTheFront: a worker shows the completeness its front
// handed over in the request's headers, and sends none of its own (the
// front does).
func TestCompletenessFromTheFront(t *testing.T) {
	at, checked := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC), time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f := newFixture(t, Options{TrustCompleteness: true}, query.Options{})
	resp, b := f.do(t, "GET", "/v1/tenants/acme/tables", acmeKey, nil,
		CompleteThroughHeader, at.Format(time.RFC3339Nano), CompleteCheckedHeader, checked.Format(time.RFC3339Nano))
	var body struct {
		Completeness completeness `json:"completeness"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatal(err)
	}
	if c := body.Completeness; c.State != "ok" || c.CompleteThrough == nil || !c.CompleteThrough.Equal(at) || c.Checked == nil || !c.Checked.Equal(checked) {
		t.Errorf("got %+v, want through %s checked %s", c, at, checked)
	}
	if h := resp.Header.Get(CompleteThroughHeader); h != "" {
		t.Errorf("the worker sent %s: %q", CompleteThroughHeader, h)
	}
	_, b = f.do(t, "GET", "/v1/tenants/acme/tables", acmeKey, nil, CompleteThroughHeader, "unknown")
	if !strings.Contains(string(b), `"state": "unknown"`) || !strings.Contains(string(b), "cannot be read") {
		t.Errorf("front says unknown: got %s", b)
	}
}

// TestCompletenessMetric: fhirlake_lake_complete_through_seconds is each
// tenant's time with tenant labels, else the earliest under tenant="*".
func TestCompletenessMetric(t *testing.T) {
	checked := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	acmeAt, globexAt := checked.Add(-time.Minute), checked.Add(-time.Hour)
	for _, tc := range []struct {
		labels bool
		want   []string
	}{
		{false, []string{`fhirlake_lake_complete_through_seconds{tenant="*"} ` + unix(globexAt)}},
		{true, []string{
			`fhirlake_lake_complete_through_seconds{tenant="acme"} ` + unix(acmeAt),
			`fhirlake_lake_complete_through_seconds{tenant="globex"} ` + unix(globexAt),
		}},
	} {
		f := newFixture(t, Options{TenantLabels: tc.labels, Completeness: fixedCompleteness(checked, acmeAt, globexAt)}, query.Options{})
		_, b := f.do(t, "GET", "/metrics", "", nil)
		for _, want := range tc.want {
			if !strings.Contains(string(b), want) {
				t.Errorf("labels %v: /metrics lacks %s:\n%s", tc.labels, want, grepLines(string(b), "complete_through"))
			}
		}
		if !tc.labels && strings.Contains(string(b), "acme") {
			t.Errorf("/metrics without tenant labels names acme")
		}
	}
}

// unix is t as /metrics shows a Unix time.
func unix(t time.Time) string { return strconv.FormatFloat(float64(t.Unix()), 'g', -1, 64) }

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
