package compactor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"fhirlake/query"
	"fhirlake/query/querytest"
)

// A mart row that refers to a deleted resource fails the not_deleted tests and nothing
// is published: when the delete is the newer (a base row refers to a resource deleted
// in an incremental run), when the reference is (a new row refers to a resource
// deleted before the base), and in a rebuild. Readers keep the last snapshot.
func TestReferenceToADeletedResourceBlocksPublication(t *testing.T) {
	t.Parallel() // see needDBTRunner
	runner := needDBTRunner(t)
	ctx := context.Background()
	ten, store := newTenant(t, "acme")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	obs := func(patient string) string {
		return `"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/` +
			patient + `"},"effectiveDateTime":"2026-01-01T00:00:00Z","valueQuantity":{"value":60}`
	}
	c := newTestCompactorWith(t, runner)
	published := ""
	compact := func(step string, changes []querytest.Change, wantFailed string) {
		t.Helper()
		if len(changes) > 0 {
			querytest.WriteChanges(t, store.Root, "acme", changes)
		}
		res, err := c.Compact(ctx, ten)
		var be *BuildError
		switch {
		case wantFailed == "" && err != nil:
			t.Fatalf("%s: %v", step, err)
		case wantFailed == "":
			published = res.SnapshotID
		case !errors.As(err, &be):
			t.Fatalf("%s: %v, want the test %s to fail", step, err, wantFailed)
		default:
			// The nodes after a failure are skipped; of those that failed, the
			// relationship test also fails for a reference to a deleted patient.
			var names []string
			found := false
			for _, f := range be.Failed {
				if f.Status != "skipped" {
					names = append(names, f.UniqueID)
					found = found || strings.Contains(f.UniqueID, "."+wantFailed+"_")
				}
			}
			if !found {
				t.Fatalf("%s: failed %v, want %s among them", step, names, wantFailed)
			}
		}
		s, err := query.Open(ctx, "acme", store.Root, query.Options{SpeedOverlap: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		got := ""
		if m := s.Catalog().Snapshot; m != nil {
			got = m.SnapshotID
		}
		if got != published {
			t.Errorf("%s: readers are on snapshot %q, want %q", step, got, published)
		}
	}

	compact("first run", []querytest.Change{
		{Type: "Patient", ID: "p1", Version: "1", Offset: 0, Updated: t0},
		{Type: "Patient", ID: "p2", Version: "1", Offset: 1, Updated: t0},
		{Type: "Observation", ID: "o1", Version: "1", Offset: 2, Updated: t0, Fields: obs("p1")},
		{Type: "Observation", ID: "o2", Version: "1", Offset: 3, Updated: t0, Fields: obs("p2")},
	}, "")
	compact("p1 deleted, o1 of the base refers to it", []querytest.Change{
		{Type: "Patient", ID: "p1", Version: "2", Delete: true, Offset: 10, Updated: t0.Add(time.Hour)},
	}, "not_deleted_observations_patient_id")
	compact("o1 deleted too", []querytest.Change{
		{Type: "Observation", ID: "o1", Version: "2", Delete: true, Offset: 11, Updated: t0.Add(time.Hour)},
	}, "")
	compact("a new o3 refers to p1, deleted before", []querytest.Change{
		{Type: "Observation", ID: "o3", Version: "1", Offset: 20, Updated: t0.Add(2 * time.Hour), Fields: obs("p1")},
	}, "not_deleted_observations_patient_id")
	c.opts.FullRefresh = true
	compact("the same in a rebuild", nil, "not_deleted_observations_patient_id")
}
