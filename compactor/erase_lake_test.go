package compactor

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"fhirlake/lake"
	"fhirlake/query/querytest"
	"fhirlake/sink"
)

// erasedA matches the ids of patient p1-a and of every resource in its compartment
// that everyViewChanges(…, "-a") writes; Location, Organization, Practitioner and the
// other patient p2-a stay.
var erasedA = regexp.MustCompile(`\b(p1|e1|o1|c1|pr1|m1|i1|a1|cp1|cl1|d1|d2|dr1|eob1)-a\b`)

// TestEraseLocalLake erases a patient from a lake with a snapshot and a speed tail,
// both holding two patients' resources in every default view: afterwards no view,
// resources row or snapshot table names the patient or its resources, every other
// row is as it was, and one snapshot is left. A replay of the patient's changes
// compacted after the erasure stays out of the snapshot; a new change comes in.
func TestEraseLocalLake(t *testing.T) {
	t.Parallel() // see needDBTRunner
	runner := needDBTRunner(t)
	ctx := context.Background()
	ten, store := newTenant(t, "acme")
	a, b := everyViewChanges(0, "-a"), everyViewChanges(100, "-b")
	querytest.WriteChanges(t, store.Root, "acme", append(a, b...))
	c := newTestCompactor(t, runner, nil, func(o *Options) {
		o.Overlap = 0
		o.Timeout = 10 * time.Minute
	})
	if _, err := c.Compact(ctx, ten); err != nil {
		t.Fatal(err)
	}
	// A second run writes new versions of both patients as the state's delta, beside
	// the base it carries: the erasure must reach every part.
	querytest.WriteChanges(t, store.Root, "acme", []querytest.Change{
		{Type: "Patient", ID: "p1-a", Version: "3", Offset: 200, Fields: `"gender":"female","birthDate":"1980-01-04"`},
		{Type: "Patient", ID: "p1-b", Version: "3", Offset: 201, Fields: `"gender":"female","birthDate":"1980-01-04"`},
	})
	merged, err := c.Compact(ctx, ten)
	if err != nil {
		t.Fatal(err)
	}
	if !merged.Models[lake.StateModel(lake.RawDataset)].Merged() {
		t.Fatalf("second run %+v: want a delta beside the first run's base", merged.Models[lake.StateModel(lake.RawDataset)])
	}
	// The speed tail: new versions of both patients' conditions.
	querytest.WriteChanges(t, store.Root, "acme", []querytest.Change{
		{Type: "Condition", ID: "c1-a", Version: "2", Offset: 300, Fields: `"subject":{"reference":"Patient/p1-a"},"onsetDateTime":"2020-01-01"`},
		{Type: "Condition", ID: "c1-b", Version: "2", Offset: 301, Fields: `"subject":{"reference":"Patient/p1-b"},"onsetDateTime":"2020-01-01"`},
	})
	before := viewRows(t, store.Root)
	for name, rows := range before {
		if !erasedA.MatchString(rows) && name != "practitioner" && name != "location" && name != "organization" {
			t.Fatalf("view %s holds nothing of patient p1-a before the erasure: the test data must reach every view", name)
		}
	}
	res, err := c.Erase(ctx, ten, EraseRequest{Patient: "p1-a"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Republished || res.Speed[lake.RawDataset] == nil || res.Speed[lake.RawDataset].Rows < 15 || res.Resources != 14 {
		t.Errorf("result %+v, raw %+v: want the snapshot republished, the raw rows of 14 resources removed", res, res.Speed[lake.RawDataset])
	}
	after := viewRows(t, store.Root)
	for name, rows := range before {
		want := withoutLines(rows, erasedA)
		if got := after[name]; got != want {
			t.Errorf("view %s after the erasure:\n got  %s\n want %s", name, got, want)
		}
	}
	checkSnapshotWithout(t, store, erasedA)
	snapshots := map[string]bool{}
	objs, err := store.List(ctx, lake.BatchPrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		id, _ := lake.ParseSnapshotKey(o.Key)
		snapshots[id] = true
	}
	if len(snapshots) != 1 || !snapshots[res.Snapshot] {
		t.Errorf("snapshots left: %v, want only %s", snapshots, res.Snapshot)
	}
	rec, err := sink.ReadErasure(ctx, store, lake.ErasureKey(lake.PatientHash("p1-a")))
	if err != nil || rec == nil || rec.Completed.IsZero() || len(rec.Keys) != 14 {
		t.Fatalf("erasure record %+v, %v", rec, err)
	}

	// Running it again finds nothing left to do.
	again, err := c.Erase(ctx, ten, EraseRequest{Patient: "p1-a"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Republished || len(again.Speed) != 0 || again.Snapshot != res.Snapshot {
		t.Errorf("second run %+v: want nothing removed", again)
	}

	// A replay of the patient's changes and a change after the erasure, then a
	// compaction: the replay stays out, the new change comes in.
	querytest.WriteChanges(t, store.Root, "acme", a)
	querytest.WriteChanges(t, store.Root, "acme", []querytest.Change{
		{Type: "Patient", ID: "p1-a", Version: "3", Offset: 1000, Fields: `"gender":"other"`},
	})
	if _, err := c.Compact(ctx, ten); err != nil {
		t.Fatal(err)
	}
	checkSnapshotWithout(t, store, regexp.MustCompile(`\b(e1|o1|c1|pr1|m1|i1|a1|cp1|cl1|d1|d2|dr1|eob1)-a\b`))
	m, err := sink.ReadManifest(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	if got := queryOne(t, store.Root, m.SnapshotID, "SELECT string_agg(patient_id || ':' || gender, ',') FROM patients WHERE patient_id = 'p1-a'"); got != "p1-a:other" {
		t.Errorf("patients mart after a new change of the erased patient: %q, want p1-a:other", got)
	}
}

// withoutLines drops the lines re matches.
func withoutLines(s string, re *regexp.Regexp) string {
	var out []string
	for _, l := range strings.SplitAfter(s, "\n") {
		if !re.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// checkSnapshotWithout fails when any row of any table of the current snapshot,
// as JSON, matches re.
func checkSnapshotWithout(t *testing.T, store *recordingStore, re *regexp.Regexp) {
	t.Helper()
	m, err := sink.ReadManifest(context.Background(), store)
	if err != nil || m == nil {
		t.Fatalf("manifest %v, %v", m, err)
	}
	db, err := openDuckDB()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, name := range m.ModelNames() {
		// Every part of a state model: base, changed keys, delta.
		for _, key := range m.Models[name].Keys() {
			f := filepath.Join(store.Root, filepath.FromSlash(key))
			if _, err := os.Stat(f); err != nil {
				t.Fatalf("%s: %v", filepath.Base(f), err)
			}
			rows, err := db.Query("SELECT to_json(t)::VARCHAR FROM read_parquet(" + sqlString(f) + ") AS t")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var j string
				if err := rows.Scan(&j); err != nil {
					t.Fatal(err)
				}
				if re.MatchString(j) {
					t.Errorf("snapshot %s, %s: %s", m.SnapshotID, name, j)
				}
			}
			rows.Close()
		}
	}
}
