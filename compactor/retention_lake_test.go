package compactor

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fhirlake/flatten"
	"fhirlake/query"
	"fhirlake/query/querytest"
)

// everyViewChanges yields rows in each of the 17 default views: one resource of
// each type a view reads (an Observation with components for
// observation_component), several versions of some, a delete.
func everyViewChanges(offset int64, suffix string) []querytest.Change {
	ref := `"subject":{"reference":"Patient/p1` + suffix + `"},"patient":{"reference":"Patient/p1` + suffix + `"}`
	var cs []querytest.Change
	add := func(typ, id, version string, fields string) {
		cs = append(cs, querytest.Change{Type: typ, ID: id + suffix, Version: version, Offset: offset, Fields: fields})
		offset++
	}
	add("Patient", "p1", "1", `"gender":"female","birthDate":"1980-01-02"`)
	add("Patient", "p1", "2", `"gender":"female","birthDate":"1980-01-03"`)
	add("Patient", "p2", "1", `"gender":"male"`)
	add("Encounter", "e1", "1", `"status":"finished",`+ref)
	add("Observation", "o1", "1", `"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"component":[{"code":{"coding":[{"code":"8480-6"}]},"valueQuantity":{"value":120}},{"code":{"coding":[{"code":"8462-4"}]},"valueQuantity":{"value":80}}],`+ref)
	add("Condition", "c1", "1", ref)
	add("Procedure", "pr1", "1", `"status":"completed",`+ref)
	add("MedicationRequest", "m1", "1", `"status":"active","intent":"order",`+ref)
	add("Immunization", "i1", "1", `"status":"completed",`+ref)
	add("AllergyIntolerance", "a1", "1", ref)
	add("CarePlan", "cp1", "1", `"status":"active","intent":"plan",`+ref)
	add("Claim", "cl1", "1", `"status":"active",`+ref)
	add("DiagnosticReport", "d1", "1", `"status":"final",`+ref)
	add("DiagnosticReport", "d2", "1", `"status":"final",`+ref)
	add("DocumentReference", "dr1", "1", `"status":"current",`+ref)
	add("ExplanationOfBenefit", "eob1", "1", `"status":"active",`+ref)
	add("Location", "l1", "1", `"name":"Ward 1"`)
	add("Organization", "org1", "1", `"name":"Hospital"`)
	add("Practitioner", "pra1", "1", `"name":[{"family":"Who"}]`)
	cs = append(cs, querytest.Change{Type: "DiagnosticReport", ID: "d2" + suffix, Version: "2", Delete: true, Offset: offset})
	return cs
}

// viewRows renders the rows of every default view, and of resources, as a reader of
// the lake sees them: every column, sorted.
func viewRows(t *testing.T, root string) map[string]string {
	t.Helper()
	views, err := flatten.LoadViews("")
	if err != nil {
		t.Fatal(err)
	}
	s, err := query.Open(context.Background(), "acme", root, query.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := map[string]string{}
	names := []string{"resources"}
	for _, v := range views {
		names = append(names, v.Name())
	}
	for _, name := range names {
		var b strings.Builder
		// Lineage columns say which file a row came from: a reader's rows are the rest.
		q := "SELECT * EXCLUDE (_ingest_time) FROM " + name + " ORDER BY ALL"
		if name == "resources" {
			q = "SELECT * EXCLUDE (ingest_time) FROM resources ORDER BY ALL"
		}
		if _, err := s.Export(context.Background(), &b, q, "csv", query.ExportOptions{}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = b.String()
	}
	return out
}

// TestEveryViewKeepsItsRowsThroughRetention: for every default view, the rows a
// reader sees before compaction, after it, and after retention has deleted every speed
// file older than the snapshot are the same.
func TestEveryViewKeepsItsRowsThroughRetention(t *testing.T) {
	t.Parallel() // see needDBTRunner
	runner := needDBTRunner(t)
	ctx := context.Background()
	ten, store := newTenant(t, "acme")
	querytest.WriteChanges(t, store.Root, "acme", everyViewChanges(0, "-old"))
	// Those files are ten days old; the next are written now.
	old := time.Now().Add(-10 * 24 * time.Hour)
	var oldFiles []string
	err := filepath.WalkDir(filepath.Join(store.Root, "speed"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		oldFiles = append(oldFiles, p)
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
	querytest.WriteChanges(t, store.Root, "acme", everyViewChanges(100, "-new"))
	before := viewRows(t, store.Root)
	for name, rows := range before {
		if strings.Count(rows, "\n") < 3 {
			t.Fatalf("view %s has %q before compaction: the test data must reach every view, old and new", name, rows)
		}
	}
	c := newTestCompactor(t, runner, nil, func(o *Options) {
		o.Overlap = 0
		o.Timeout = 10 * time.Minute
		o.Expire.SpeedRetention = 7 * 24 * time.Hour
	})
	res, err := c.Compact(ctx, ten)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExpireErr != nil {
		t.Fatal(res.ExpireErr)
	}
	// The watermark is now: retention deleted every file older than a week.
	for _, p := range oldFiles {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was kept: retention did not run", strings.TrimPrefix(p, store.Root))
		}
	}
	after := viewRows(t, store.Root)
	for name, want := range before {
		if got := after[name]; got != want {
			t.Errorf("view %s after compaction and retention:\n got  %s\n want %s", name, got, want)
		}
	}
}
