package query

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"fhirlake/query/querytest"
)

// TestLatestNeedsNoVersionID: a delete without a versionId (or a lastUpdated)
// outranks the versioned upserts it follows; a server that does not version its
// resources is ranked by lastUpdated, not by arrival; a re-created resource
// comes back after such a delete. Read from the speed layer alone, and beside
// a snapshot of the first changes.
func TestLatestNeedsNoVersionID(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	first := []querytest.Change{
		{Type: "Patient", ID: "deleted", Version: "1", Offset: 0, Updated: t0},
		{Type: "Patient", ID: "deleted", Version: "2", Offset: 1, Updated: t0.Add(time.Second)},
		// An unversioned server's two versions, the newer arriving first.
		{Type: "Patient", ID: "unversioned", Offset: 2, Updated: t0.Add(time.Hour), Fields: `"gender":"female"`},
		{Type: "Patient", ID: "unversioned", Offset: 3, Updated: t0.Add(time.Minute), Fields: `"gender":"male"`},
		{Type: "Patient", ID: "recreated", Version: "1", Offset: 4, Updated: t0},
	}
	second := []querytest.Change{
		{Type: "Patient", ID: "deleted", Delete: true, NoUpdated: true, Offset: 10},
		{Type: "Patient", ID: "recreated", Delete: true, NoUpdated: true, Offset: 11},
	}
	third := []querytest.Change{
		// Re-created after its delete, lastUpdated after the delete was stored.
		{Type: "Patient", ID: "recreated", Version: "3", Offset: 12, Updated: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)},
	}
	check := func(t *testing.T, s *Session) {
		t.Helper()
		if n := count(t, s, "SELECT count(*) FROM patient WHERE id = 'deleted'"); n != 0 {
			t.Errorf("a delete without versionId: the resource still shows (%d rows)", n)
		}
		if n := count(t, s, "SELECT count(*) FROM patient WHERE id = 'unversioned' AND gender = 'female'"); n != 1 {
			t.Errorf("unversioned: the version last updated is not the one shown")
		}
		if n := count(t, s, "SELECT count(*) FROM patient WHERE id = 'recreated'"); n != 1 {
			t.Errorf("re-created after a delete without versionId: %d rows, want 1", n)
		}
		if n := count(t, s, "SELECT count(*) FROM resources"); n != 2 {
			t.Errorf("resources: %d, want 2 (unversioned, recreated)", n)
		}
	}
	t.Run("speed", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "acme")
		for _, cs := range [][]querytest.Change{first, second, third} {
			querytest.WriteChanges(t, root, "acme", cs)
		}
		s, err := Open(context.Background(), "acme", root, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		check(t, s)
	})
	t.Run("beside a snapshot", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "acme")
		querytest.WriteChanges(t, root, "acme", first)
		snapshot(t, root, time.Now())
		querytest.WriteChanges(t, root, "acme", second)
		querytest.WriteChanges(t, root, "acme", third)
		s, err := Open(context.Background(), "acme", root, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		check(t, s)
	})
}
