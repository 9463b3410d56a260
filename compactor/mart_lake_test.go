package compactor

import (
	"context"
	"strings"
	"testing"
	"time"

	"fhirlake/query"
	"fhirlake/query/querytest"
)

// TestMergedMartsReadAtTheirNewState: after an incremental run, the resource marts are
// merged on read (a base carried from the rebuild, the changed ids, the delta's rows),
// and a reader's session shows them at the resources' new state: an updated patient
// and observation at their new version, a deleted observation gone, the unchanged
// rows once each; the aggregate mart built from them agrees.
func TestMergedMartsReadAtTheirNewState(t *testing.T) {
	t.Parallel() // see needDBTRunner
	runner := needDBTRunner(t)
	ctx := context.Background()
	ten, store := newTenant(t, "acme")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	obs := func(id, patient, value string) string {
		return `"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/` +
			patient + `"},"effectiveDateTime":"2026-01-01T00:00:00Z","valueQuantity":{"value":` + value + `}`
	}
	batches := [][]querytest.Change{
		{
			{Type: "Patient", ID: "p1", Version: "1", Offset: 0, Updated: t0, Fields: `"gender":"female"`},
			{Type: "Patient", ID: "p2", Version: "1", Offset: 1, Updated: t0, Fields: `"gender":"male"`},
			{Type: "Observation", ID: "o1", Version: "1", Offset: 2, Updated: t0, Fields: obs("o1", "p1", "60")},
			{Type: "Observation", ID: "o2", Version: "1", Offset: 3, Updated: t0, Fields: obs("o2", "p1", "70")},
			{Type: "Observation", ID: "o3", Version: "1", Offset: 4, Updated: t0, Fields: obs("o3", "p2", "80")},
		},
		{
			{Type: "Patient", ID: "p1", Version: "2", Offset: 10, Updated: t0.Add(time.Hour), Fields: `"gender":"other"`},
			{Type: "Observation", ID: "o1", Version: "2", Offset: 11, Updated: t0.Add(time.Hour), Fields: obs("o1", "p1", "61")},
			{Type: "Observation", ID: "o2", Version: "2", Delete: true, Offset: 12, Updated: t0.Add(time.Hour)},
		},
	}
	c := newTestCompactorWith(t, runner)
	var last *Result
	for i, b := range batches {
		querytest.WriteChanges(t, store.Root, "acme", b)
		res, err := c.Compact(ctx, ten)
		if err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		last = res
	}
	for _, mart := range []string{"patients", "observations"} {
		if mod := last.Models[mart]; !mod.Merged() || len(mod.Files) == 0 || mod.Files[0] == mod.Delta.Files[0] {
			t.Fatalf("mart %s of the incremental run: %+v, want a base carried and a delta", mart, mod)
		}
	}
	s, err := query.Open(ctx, "acme", store.Root, query.Options{SpeedOverlap: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for q, want := range map[string]string{
		"SELECT string_agg(patient_id || ':' || version_id || ':' || gender, ' ' ORDER BY patient_id) FROM patients":                     "p1:2:other p2:1:male",
		"SELECT string_agg(observation_id || ':' || version_id || ':' || value_quantity, ' ' ORDER BY observation_id) FROM observations": "o1:2:61.0 o3:1:80.0",
		"SELECT string_agg(patient_id || ':' || gender || ':' || heart_rate, ' ' ORDER BY patient_id) FROM patient_latest_vitals":        "p1:other:61.0 p2:male:80.0",
	} {
		var b strings.Builder
		if _, err := s.Export(ctx, &b, q, "csv", query.ExportOptions{}); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if _, got, _ := strings.Cut(strings.TrimSpace(b.String()), "\n"); got != want {
			t.Errorf("%s: %q, want %q", q, got, want)
		}
	}
}

// The latest vitals show a value with the unit of its own measurement: a newer heart
// rate recorded without a unit does not borrow the unit of an older one.
func TestLatestVitalsUnitIsTheValuesOwn(t *testing.T) {
	t.Parallel() // see needDBTRunner
	runner := needDBTRunner(t)
	ctx := context.Background()
	ten, store := newTenant(t, "acme")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	hr := func(at, quantity string) string {
		return `"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p1"},` +
			`"effectiveDateTime":"` + at + `","valueQuantity":` + quantity
	}
	querytest.WriteChanges(t, store.Root, "acme", []querytest.Change{
		{Type: "Patient", ID: "p1", Version: "1", Offset: 0, Updated: t0},
		{Type: "Observation", ID: "o1", Version: "1", Offset: 1, Updated: t0, Fields: hr("2026-01-01T08:00:00Z", `{"value":70,"unit":"/min"}`)},
		{Type: "Observation", ID: "o2", Version: "1", Offset: 2, Updated: t0, Fields: hr("2026-01-01T09:00:00Z", `{"value":72}`)},
	})
	res, err := newTestCompactorWith(t, runner).Compact(ctx, ten)
	if err != nil {
		t.Fatal(err)
	}
	q := "SELECT heart_rate || ' ' || coalesce(heart_rate_unit, '-') || ' ' || heart_rate_at::VARCHAR FROM patient_latest_vitals"
	if got, want := queryOne(t, store.Root, res.SnapshotID, q), "72.0 - 2026-01-01 09:00:00+00"; got != want {
		t.Errorf("%s: %q, want %q", q, got, want)
	}
}
