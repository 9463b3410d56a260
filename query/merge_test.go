package query

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"fhirlake/query/querytest"
)

type change = querytest.Change

func patientChange(id, version string, offset int64, gender string) change {
	return change{Type: "Patient", ID: id, Version: version, Offset: offset, Fields: `"gender":"` + gender + `"`}
}

// before are the changes a snapshot holds: five patients, p4 at version 2.
var before = []change{
	patientChange("p1", "1", 0, "male"),
	patientChange("p2", "1", 1, "male"),
	patientChange("p3", "1", 2, "male"),
	patientChange("p4", "1", 3, "male"),
	patientChange("p4", "2", 4, "female"),
	patientChange("p5", "1", 5, "male"),
}

// after are the changes written beside the snapshot: p1 updated twice, p2
// deleted, p4's older version arriving late, p6 new.
var after = []change{
	patientChange("p1", "2", 10, "female"),
	patientChange("p1", "3", 11, "other"),
	{Type: "Patient", ID: "p2", Version: "2", Delete: true, Offset: 12},
	patientChange("p4", "1", 13, "unknown"),
	patientChange("p6", "1", 14, "female"),
}

// mergeLake writes before, publishes a snapshot of it (its state models in
// parts files each), then writes after, a replay of part of it with other
// boundaries, and a replay of p3's change that the snapshot holds already.
func mergeLake(t *testing.T, root string, parts int) {
	t.Helper()
	querytest.WriteChanges(t, root, "acme", before)
	if parts > 0 {
		publishSnapshot(t, root, "20260101T000000Z-merge1", time.Now().Add(-time.Hour).UTC(), parts, "id")
	}
	querytest.WriteChanges(t, root, "acme", after)
	querytest.WriteChanges(t, root, "acme", after[1:2])
	querytest.WriteChanges(t, root, "acme", []change{after[4], patientChange("p3", "1", 2, "male")})
}

func rows(t *testing.T, s *Session, q string) string {
	t.Helper()
	return dump(t, s, q)
}

// TestMergeBesideSnapshot: beside a snapshot, a view holds each resource
// once at its latest version: a resource updated twice (and replayed)
// counts once, a delete removes the snapshot's row, a late older version
// does not replace the snapshot's newer one, and a change both in the
// snapshot and in a speed file (the overlap) counts once. The views equal
// those of the same changes without a snapshot, with the snapshot's state
// models split in one file and in several.
func TestMergeBesideSnapshot(t *testing.T) {
	ctx := context.Background()
	ref := filepath.Join(t.TempDir(), "acme")
	mergeLake(t, ref, 0)
	speedOnly, err := Open(ctx, "acme", ref, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer speedOnly.Close()
	for _, parts := range []int{1, 3} {
		root := filepath.Join(t.TempDir(), "acme")
		mergeLake(t, root, parts)
		s, err := Open(ctx, "acme", root, Options{SpeedOverlap: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if cat := s.Catalog(); cat.Snapshot == nil {
			t.Fatalf("%d parts: no snapshot", parts)
		}
		for q, want := range map[string]string{
			"SELECT _resource_id, _version_id, gender FROM patient":                       "p1,3,other\np3,1,male\np4,2,female\np5,1,male\np6,1,female\n",
			"SELECT id, version_id, operation FROM resources_latest":                      "p1,3,upsert\np2,2,delete\np3,1,upsert\np4,2,upsert\np5,1,upsert\np6,1,upsert\n",
			"SELECT id FROM resources":                                                    "p1\np3\np4\np5\np6\n",
			"SELECT _resource_id, _version_id FROM patient_all WHERE _resource_id = 'p1'": "p1,1\np1,2\np1,3\np1,3\n",
			"SELECT count(*) FROM patient":                                                "5\n",
		} {
			if got := rows(t, s, q); got != want {
				t.Errorf("%d parts: %s:\ngot\n%swant\n%s", parts, q, got, want)
			}
		}
		// Counted once the raw views, which rank every type, are made.
		if n := s.Catalog().Changed; n != 5 {
			t.Errorf("%d parts: %d changed resources, want 5 (p1, p2, p3, p4, p6)", parts, n)
		}
		for _, q := range []string{
			"SELECT * EXCLUDE (_ingest_time, id) FROM patient",
			"SELECT * EXCLUDE (ingest_time, resource) FROM resources_latest",
			"SELECT resource::JSON->>'gender' FROM resources",
		} {
			if got, want := rows(t, s, q), rows(t, speedOnly, q); got != want {
				t.Errorf("%d parts: %s:\nwith the snapshot:\n%s\nspeed only:\n%s", parts, q, got, want)
			}
		}
		// p3's change is both in the snapshot and in a speed file: the
		// view shows the speed file's row, which holds every column (the
		// snapshot's has no id).
		if got := rows(t, s, "SELECT id FROM patient WHERE _resource_id = 'p3'"); got != "p3\n" {
			t.Errorf("%d parts: p3 from the speed file: got %q", parts, got)
		}
	}
}

// TestMergeCacheFollowsTheLake: the changes ranked at a build are rebuilt
// when a speed file appears, and dropped when a new snapshot holds them.
func TestMergeCacheFollowsTheLake(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "acme")
	mergeLake(t, root, 2)
	s, err := Open(ctx, "acme", root, Options{SpeedOverlap: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const patients = "SELECT _resource_id, _version_id, gender FROM patient"
	if got, want := rows(t, s, patients), "p1,3,other\np3,1,male\np4,2,female\np5,1,male\np6,1,female\n"; got != want {
		t.Fatalf("got\n%swant\n%s", got, want)
	}
	gen := s.Catalog().Generation
	if changed, err := s.Refresh(ctx); err != nil || changed {
		t.Fatalf("refresh of an unchanged lake: rebuilt %v, %v", changed, err)
	}

	// A new speed file: p1 updated again, p5 (so far only in the
	// snapshot) deleted, p6 updated.
	querytest.WriteChanges(t, root, "acme", []change{
		patientChange("p1", "4", 20, "female"),
		{Type: "Patient", ID: "p5", Version: "2", Delete: true, Offset: 21},
		patientChange("p6", "2", 22, "male"),
	})
	if got := rows(t, s, patients); got != "p1,3,other\np3,1,male\np4,2,female\np5,1,male\np6,1,female\n" {
		t.Errorf("before the refresh, the views changed:\n%s", got)
	}
	if changed, err := s.Refresh(ctx); err != nil || !changed {
		t.Fatalf("refresh after a new speed file: rebuilt %v, %v", changed, err)
	}
	if s.Catalog().Generation != gen+1 || s.Catalog().Changed != 6 {
		t.Errorf("generation %d (was %d), %d changed resources, want 6", s.Catalog().Generation, gen, s.Catalog().Changed)
	}
	want := "p1,4,female\np3,1,male\np4,2,female\np6,2,male\n"
	if got := rows(t, s, patients); got != want {
		t.Errorf("after a new speed file:\ngot\n%swant\n%s", got, want)
	}
	if lakeTables(t, s) == 0 {
		t.Error("no table of changes beside the snapshot")
	}

	// A new snapshot holds every change: nothing is left to rank, the
	// tables of changes are gone, and the views are the same.
	publishSnapshot(t, root, "20260101T000000Z-merge2", time.Now().Add(-time.Minute).UTC(), 2, "id")
	if changed, err := s.Refresh(ctx); err != nil || !changed {
		t.Fatalf("refresh after a new snapshot: rebuilt %v, %v", changed, err)
	}
	if cat := s.Catalog(); cat.Snapshot.SnapshotID != "20260101T000000Z-merge2" || cat.SpeedFiles != 0 || cat.Changed != 0 {
		t.Errorf("after a new snapshot: %s, %d speed files, %d changed", cat.Snapshot.SnapshotID, cat.SpeedFiles, cat.Changed)
	}
	if got := rows(t, s, patients); got != want {
		t.Errorf("after a new snapshot:\ngot\n%swant\n%s", got, want)
	}
	if got := lakeTables(t, s); got != 0 {
		t.Errorf("%d tables of changes left after a snapshot that holds them all", got)
	}

	// And a change after it is ranked against the new snapshot.
	querytest.WriteChanges(t, root, "acme", []change{{Type: "Patient", ID: "p3", Version: "2", Delete: true, Offset: 30}})
	if _, err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := rows(t, s, patients), "p1,4,female\np4,2,female\np6,2,male\n"; got != want {
		t.Errorf("after a delete beside the new snapshot:\ngot\n%swant\n%s", got, want)
	}
}
