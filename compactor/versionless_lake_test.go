package compactor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fhirlake/bulk"
	"fhirlake/flatten"
	"fhirlake/query"
	"fhirlake/query/querytest"
	"fhirlake/sink"
)

// TestDBTRanksWithoutVersionIDs: the batch layer ranks as the query layer does when
// versionIds are missing — a delete without one outranks the versions it follows, an
// unversioned server's versions rank by lastUpdated, a resource re-created after such a
// delete comes back — and publishes (a missing versionId only warns). Three
// incremental runs publish what a full rebuild publishes, and a reader of the
// snapshot alone sees the same as a reader of the speed layer.
func TestDBTRanksWithoutVersionIDs(t *testing.T) {
	t.Parallel() // see needDBTRunner
	runner := needDBTRunner(t)
	ctx := context.Background()
	ten, store := newTenant(t, "acme")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	batches := [][]querytest.Change{
		{
			{Type: "Patient", ID: "deleted", Version: "1", Offset: 0, Updated: t0},
			{Type: "Patient", ID: "deleted", Version: "2", Offset: 1, Updated: t0.Add(time.Second)},
			{Type: "Patient", ID: "unversioned", Offset: 2, Updated: t0.Add(time.Hour), Fields: `"gender":"female"`},
			{Type: "Patient", ID: "unversioned", Offset: 3, Updated: t0.Add(time.Minute), Fields: `"gender":"male"`},
			{Type: "Patient", ID: "recreated", Version: "1", Offset: 4, Updated: t0},
		},
		{
			{Type: "Patient", ID: "deleted", Delete: true, NoUpdated: true, Offset: 10},
			{Type: "Patient", ID: "recreated", Delete: true, NoUpdated: true, Offset: 11},
		},
		{
			{Type: "Patient", ID: "recreated", Version: "3", Offset: 12, Updated: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)},
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
	speedOnly := patientsSeen(t, store.Root, true)
	if want := "recreated unversioned:female"; speedOnly != want {
		t.Fatalf("the speed layer's reader sees %q, want %q", speedOnly, want)
	}
	if got := patientsSeen(t, store.Root, false); got != speedOnly {
		t.Errorf("a reader of the snapshot sees %q, of the speed layer %q", got, speedOnly)
	}
	if got := queryOne(t, store.Root, last.SnapshotID, "SELECT string_agg(patient_id, ' ' ORDER BY patient_id) FROM patients"); got != "recreated unversioned" {
		t.Errorf("patients mart: %q", got)
	}
	c.opts.FullRefresh = true
	full, err := c.Compact(ctx, ten)
	if err != nil {
		t.Fatal(err)
	}
	for model := range full.Models {
		if d := diffParquet(t, store.Root, last.SnapshotID, full.SnapshotID, model); d != 0 {
			t.Errorf("%s: %d rows differ between the incremental snapshot and the full rebuild", model, d)
		}
	}
}

// patientsSeen lists the patients a reader of the lake sees, with their gender when
// known; snapshotOnly hides the speed files so that the snapshot alone is read.
func patientsSeen(t *testing.T, root string, speedOnly bool) string {
	t.Helper()
	if speedOnly {
		manifest := filepath.Join(root, "_manifest", "batch.json")
		b, err := os.ReadFile(manifest)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(manifest); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := os.WriteFile(manifest, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}()
	}
	s, err := query.Open(context.Background(), "acme", root, query.Options{SpeedOverlap: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var b strings.Builder
	if _, err := s.Export(context.Background(), &b, "SELECT string_agg(id || coalesce(':' || gender, ''), ' ' ORDER BY id) FROM patient", "csv", query.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	_, v, _ := strings.Cut(strings.TrimSpace(b.String()), "\n")
	return v
}

// TestBackfillWithoutVersionIDsPublishes: Synthea's export has no meta.versionId; a
// tenant backfilled from it compacts and publishes.
func TestBackfillWithoutVersionIDsPublishes(t *testing.T) {
	t.Parallel() // see needDBTRunner
	runner := needDBTRunner(t)
	dir := filepath.Join("..", "..", "shared", "data", "synthea-small")
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	if len(files) == 0 {
		t.Skipf("no Synthea export in %s (the shared test data is absent)", dir)
	}
	ctx := context.Background()
	ten, store := newTenant(t, "acme")
	views, err := flatten.LoadViews("")
	if err != nil {
		t.Fatal(err)
	}
	w, err := sink.NewWriter(map[string]sink.Store{"acme": store}, sink.WriterOptions{WorkDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	resources := 0
	for _, f := range files {
		res, err := bulk.Backfill(ctx, w, "acme", f, bulk.BackfillOptions{Views: views})
		if err != nil {
			t.Fatal(err)
		}
		resources += res.Resources
	}
	c := newTestCompactorWith(t, runner)
	res, err := c.Compact(ctx, ten)
	if err != nil {
		t.Fatalf("compaction of %d resources without versionIds: %v", resources, err)
	}
	if got := queryOne(t, store.Root, res.SnapshotID, "SELECT count(*) FROM patients WHERE version_id IS NULL"); got == "0" || got == "" {
		t.Errorf("patients mart: %s patients without a version, want every one", got)
	}
	if got := queryOne(t, store.Root, res.SnapshotID, "SELECT count(*) FROM int_resources__latest"); got == "0" {
		t.Errorf("no resource in the snapshot")
	}
}
