package query

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/duckdb/duckdb-go/v2"

	"fhirlake/query/querytest"
)

// TestAnUnreadableFileLeavesTheOthersReadable plants a file that is not
// Parquet among the raw files and a Parquet file of other columns among a
// view's: the tenant still reads every row of the good files, and the
// catalog names the two files set aside by key, without server paths.
func TestAnUnreadableFileLeavesTheOthersReadable(t *testing.T) {
	root := filepath.Join(t.TempDir(), "acme")
	querytest.WriteChanges(t, root, "acme", []querytest.Change{
		{Type: "Patient", ID: "p1", Version: "1", Offset: 0, Fields: `"gender":"female"`},
		{Type: "Patient", ID: "p2", Version: "1", Offset: 1, Fields: `"gender":"male"`},
	})
	plant := func(rel string, write func(path string)) {
		path := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		write(path)
	}
	plant("speed/resources/date=2026-01-02/t-0-5-5.parquet", func(path string) {
		if err := os.WriteFile(path, []byte("PAR1 this is not a Parquet file"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	plant("speed/patient/date=2026-01-02/t-0-6-6.parquet", func(path string) {
		db, err := sql.Open("duckdb", "")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec("COPY (SELECT 1 AS a, 'x' AS _resource_id) TO '" + sqlString(path) + "' (FORMAT parquet)"); err != nil {
			t.Fatal(err)
		}
	})
	s, err := Open(context.Background(), "acme", root, Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	if n := count(t, s, "SELECT count(*) FROM patient"); n != 2 {
		t.Errorf("patient: %d rows, want 2", n)
	}
	if n := count(t, s, "SELECT count(*) FROM resources"); n != 2 {
		t.Errorf("resources: %d rows, want 2", n)
	}
	got := s.Catalog().Unreadable
	if len(got) != 2 {
		t.Fatalf("unreadable: %+v, want the two planted files", got)
	}
	want := []string{"speed/patient/date=2026-01-02/t-0-6-6.parquet", "speed/resources/date=2026-01-02/t-0-5-5.parquet"}
	for i, u := range got {
		if u.Key != want[i] || strings.Contains(u.Reason, root) || u.Reason == "" {
			t.Errorf("unreadable[%d] = %+v, want key %s and a reason without the lake's path", i, u, want[i])
		}
	}
	// A good file written later is read; the planted ones stay out.
	querytest.WriteChanges(t, root, "acme", []querytest.Change{{Type: "Patient", ID: "p3", Version: "1", Offset: 7}})
	if _, err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "SELECT count(*) FROM patient"); n != 3 {
		t.Errorf("patient after a new file: %d rows, want 3", n)
	}
	// Once the bad file is gone, it is no longer listed.
	bad := filepath.Join(root, "speed/resources/date=2026-01-02/t-0-5-5.parquet")
	if err := os.Remove(bad); err != nil {
		t.Fatal(err)
	}
	querytest.WriteChanges(t, root, "acme", []querytest.Change{{Type: "Patient", ID: "p4", Version: "1", Offset: 5}})
	if _, err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "SELECT count(*) FROM resources"); n != 4 {
		t.Errorf("resources after the bad file was replaced: %d rows, want 4", n)
	}
	if got := s.Catalog().Unreadable; len(got) != 1 {
		t.Errorf("unreadable after the replacement: %+v, want the view's file only", got)
	}
}
