package compactor

import (
	"context"
	"testing"
	"time"

	"fhirlake/query/querytest"
)

// TestCompactReusesDBTsParse: dbt parses the project whole in the first run only,
// which also parses it as the incremental run after it will; every later run parses
// no file again, and still reads what is its own (its speed files' partitions, the
// snapshot it builds on): a resource stored in a partition no earlier run read is
// published, a deleted one is gone.
func TestCompactReusesDBTsParse(t *testing.T) {
	t.Parallel() // see needDBTRunner
	runner := needDBTRunner(t)
	ctx := context.Background()
	ten, store := newTenant(t, "acme")
	c := newTestCompactor(t, runner, nil, func(o *Options) {
		o.Overlap = 0
		o.Timeout = 10 * time.Minute
		o.RebaseShare = 100 // every run after the first builds on the state's base
	})
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	patient := func(id, version string, offset int64, day int) querytest.Change {
		return querytest.Change{Type: "Patient", ID: id, Version: version, Offset: offset,
			Updated: at.AddDate(0, 0, day).Add(time.Duration(offset) * time.Second), Fields: `"gender":"female"`}
	}
	live := func(snapshot string) string {
		return queryOne(t, store.Root, snapshot, "SELECT string_agg(resource_id, ' ' ORDER BY resource_id) FROM int_resources__latest WHERE NOT is_deleted")
	}
	var runs []*Result
	compact := func(fullRefresh bool, changes ...querytest.Change) *Result {
		t.Helper()
		querytest.WriteChanges(t, store.Root, "acme", changes)
		c.opts.FullRefresh = fullRefresh
		res, err := c.Compact(ctx, ten)
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, res)
		return res
	}
	compact(false, patient("p1", "1", 0, 0))
	compact(false, patient("p2", "1", 1, 0))

	third := compact(false, patient("p3", "1", 2, 5), querytest.Change{Type: "Patient", ID: "p1", Version: "2", Offset: 3, Delete: true, Updated: at.Add(time.Hour)})
	full := compact(true, patient("p4", "1", 4, 9))
	if got := live(third.SnapshotID); got != "p2 p3" {
		t.Errorf("third run: live patients %q, want p2 p3", got)
	}
	if got := live(full.SnapshotID); got != "p2 p3 p4" {
		t.Errorf("full refresh: live patients %q, want p2 p3 p4", got)
	}
	// Runs 1 and 4 rebuild, 2 and 3 are incremental: the project is parsed whole once,
	// by the first run, which also prepares the parse of the incremental run after it.
	for i, whole := range []bool{true, false, false, false} {
		if p := runs[i].Parse; p.Whole != whole || !whole && p.Files != 0 {
			t.Errorf("run %d: dbt's parse: %s; want a whole parse: %v", i+1, p, whole)
		}
	}
	if !runs[1].Models["int_resources__latest"].Merged() || !runs[2].Models["int_resources__latest"].Merged() {
		t.Fatal("runs 2 and 3 are not incremental")
	}
}
