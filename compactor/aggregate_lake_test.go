package compactor

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"fhirlake/lake"
	"fhirlake/query/querytest"
)

// TestAggregateMartsMergeOnRead: an incremental run rewrites the rows of the aggregate
// marts that a change reaches through another resource — an encounter whose patient
// changed gender, a patient whose only observation moved to another patient — and
// publishes what a full refresh publishes.
func TestAggregateMartsMergeOnRead(t *testing.T) {
	t.Parallel() // see needDBTRunner
	runner := needDBTRunner(t)
	ctx := context.Background()
	ten, store := newTenant(t, "acme")
	c := newTestCompactor(t, runner, nil, func(o *Options) {
		o.Overlap = 0
		o.Timeout = 10 * time.Minute
	})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	patient := func(id, version, gender string, offset int64) querytest.Change {
		return querytest.Change{Type: "Patient", ID: id, Version: version, Offset: offset, Updated: at.Add(time.Duration(offset) * time.Second),
			Fields: `"gender":"` + gender + `","birthDate":"1970-01-01"`}
	}
	observation := func(version, subject string, offset int64) querytest.Change {
		return querytest.Change{Type: "Observation", ID: "o1", Version: version, Offset: offset, Updated: at.Add(time.Duration(offset) * time.Second),
			Fields: `"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/` + subject + `"},"effectiveDateTime":"2025-01-01T10:00:00Z","valueQuantity":{"value":60}`}
	}
	querytest.WriteChanges(t, store.Root, "acme", []querytest.Change{
		patient("p1", "1", "female", 0), patient("p2", "1", "female", 1), patient("p3", "1", "female", 2),
		{Type: "Encounter", ID: "e1", Version: "1", Offset: 3, Updated: at.Add(3 * time.Second),
			Fields: `"status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"},"period":{"start":"2025-01-01T09:00:00Z"}`},
		observation("1", "p2", 4),
	})
	// The incremental run re-reads the file of the first run's watermark; it holds an
	// unrelated patient alone, so that p2 and e1 change only through other resources.
	time.Sleep(10 * time.Millisecond)
	querytest.WriteChanges(t, store.Root, "acme", []querytest.Change{patient("p9", "1", "female", 10)})
	first, err := c.Compact(ctx, ten)
	if err != nil {
		t.Fatal(err)
	}
	const vitals = "SELECT string_agg(patient_id || ':' || coalesce(heart_rate::VARCHAR, '-'), ' ' ORDER BY patient_id) FROM patient_latest_vitals"
	if got := queryOne(t, store.Root, first.SnapshotID, vitals); got != "p1:- p2:60.0 p3:- p9:-" {
		t.Fatalf("first run: %s: got %s", vitals, got)
	}
	// p1 changes gender (e1 does not change); o1 moves from p2 to p3.
	querytest.WriteChanges(t, store.Root, "acme", []querytest.Change{patient("p1", "2", "male", 11), observation("2", "p3", 12)})
	inc, err := c.Compact(ctx, ten)
	if err != nil {
		t.Fatal(err)
	}
	for _, mart := range []string{"patient_latest_vitals", "encounter_summary"} {
		if !inc.Models[mart].Merged() {
			t.Errorf("%s is not merged on read: %+v", mart, inc.Models[mart])
		}
	}
	if !inc.Models[lake.StateModel(lake.RawDataset)].Merged() {
		t.Fatal("the second run is no incremental run")
	}
	changedIDs := func(mart, key string) string {
		return queryOne(t, store.Root, inc.SnapshotID, fmt.Sprintf("SELECT string_agg(%s, ' ' ORDER BY 1) FROM read_parquet('%s')",
			key, filepath.Join(store.Root, filepath.FromSlash(inc.Models[mart].Changed.Files[0]))))
	}
	if got := changedIDs("patients", "patient_id") + "|" + changedIDs("encounters", "encounter_id"); got != "p1 p9|" {
		t.Fatalf("the incremental run's changed patients|encounters: %s, want p1 p9|", got)
	}
	for q, want := range map[string]string{
		"SELECT patient_gender FROM encounter_summary WHERE encounter_id = 'e1'": "male",
		vitals: "p1:- p2:- p3:60.0 p9:-",
	} {
		if got := queryOne(t, store.Root, inc.SnapshotID, q); got != want {
			t.Errorf("%s: got %s, want %s", q, got, want)
		}
	}
	c.opts.FullRefresh = true
	full, err := c.Compact(ctx, ten)
	if err != nil {
		t.Fatal(err)
	}
	for _, mart := range []string{"patient_latest_vitals", "encounter_summary"} {
		if d := diffParquet(t, store.Root, inc.SnapshotID, full.SnapshotID, mart); d != 0 {
			t.Errorf("%s: %d rows differ between the incremental run and the full refresh", mart, d)
		}
	}
}
