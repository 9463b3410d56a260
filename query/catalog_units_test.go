package query

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"fhirlake/query/querytest"
)

// lazyLake is a snapshot with a speed tail beside it of Patients (a view
// dataset the snapshot holds), an Observation (one it does not) and a
// Device (a type without a view).
func lazyLake(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "acme")
	mergeLake(t, root, 2)
	querytest.WriteChanges(t, root, "acme", []change{observationChange, deviceChange})
	return root
}

// duckdbObjects are the views of schema main and the objects of schema
// lake in the session's DuckDB, as "main.name" and "lake.name", sorted.
func duckdbObjects(t *testing.T, s *Session) []string {
	t.Helper()
	var out []string
	err := s.internalQuery(context.Background(), `SELECT schema_name || '.' || view_name FROM duckdb_views() WHERE NOT internal AND schema_name IN ('main', 'lake')
		UNION ALL SELECT schema_name || '.' || table_name FROM duckdb_tables() WHERE schema_name IN ('main', 'lake') ORDER BY 1`,
		func(rows *sql.Rows) error {
			var name string
			if err := rows.Scan(&name); err != nil {
				return err
			}
			out = append(out, name)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAStatementMakesOnlyTheViewsItNames: a new session makes no view; a
// statement over patient makes patient (and what it reads: the ranking of
// the Patients changed beside the snapshot), not the other views nor the
// ranking of every type; a CTE of the same name makes nothing; a statement
// over device then makes the raw views it reads.
func TestAStatementMakesOnlyTheViewsItNames(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, "acme", lazyLake(t), Options{SpeedOverlap: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var listed []string
	for _, tb := range s.Catalog().Tables {
		listed = append(listed, tb.Name)
	}
	for _, want := range []string{"device", "observation", "patient", "patients", "resources"} {
		if !slices.Contains(listed, want) {
			t.Errorf("the catalog does not list %s: %v", want, listed)
		}
	}
	if got := duckdbObjects(t, s); len(got) != 0 {
		t.Errorf("a new session made %v, want nothing", got)
	}

	if got := rows(t, s, "SELECT count(*) FROM patient"); got != "5\n" {
		t.Errorf("patients: got %q, want 5", got)
	}
	if got, want := s.Catalog().Made, []string{"patient", "patient_all"}; !slices.Equal(got, want) {
		t.Errorf("made after a statement over patient: got %v, want %v", got, want)
	}
	var main, ranking []string
	for _, o := range duckdbObjects(t, s) {
		if strings.HasPrefix(o, "main.") {
			main = append(main, o)
		}
		if strings.Contains(o, "changed") || strings.Contains(o, "winners") || strings.Contains(o, "stale") {
			ranking = append(ranking, o)
		}
	}
	if want := []string{"main.patient", "main.patient_all"}; !slices.Equal(main, want) {
		t.Errorf("views in DuckDB: got %v, want %v", main, want)
	}
	if want := []string{"lake.changed__patient", "lake.stale__patient", "lake.winners__patient"}; !slices.Equal(ranking, want) {
		t.Errorf("rankings in DuckDB: got %v, want the Patients' alone %v", ranking, want)
	}
	if n := s.Catalog().Changed; n != 5 {
		t.Errorf("changed resources ranked: got %d, want the 5 Patients", n)
	}

	if got := rows(t, s, "WITH device AS (SELECT 1 AS n) SELECT n FROM device"); got != "1\n" {
		t.Errorf("a CTE named device: got %q", got)
	}
	if got := s.Catalog().Made; len(got) != 2 {
		t.Errorf("a CTE named like a view made %v", got)
	}

	if got := rows(t, s, "SELECT id FROM device"); got != "d1\n" {
		t.Errorf("devices: got %q, want d1", got)
	}
	if got, want := s.Catalog().Made, []string{"device", "patient", "patient_all", "resources", "resources_all", "resources_latest"}; !slices.Equal(got, want) {
		t.Errorf("made after a statement over device: got %v, want %v", got, want)
	}
	if n := s.Catalog().Changed; n != 7 {
		t.Errorf("changed resources ranked: got %d, want 7 (5 Patients, an Observation, a Device)", n)
	}
}

// TestManyFirstStatementsAtOnce: statements that all name views not made
// yet, at once on several connections, get the same rows as one at a
// time, and each view is made once.
func TestManyFirstStatementsAtOnce(t *testing.T) {
	ctx := context.Background()
	root := lazyLake(t)
	ref, err := Open(ctx, "acme", root, Options{SpeedOverlap: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	queries := []string{
		"SELECT _resource_id, _version_id, gender FROM patient",
		"SELECT id, version_id, operation FROM resources_latest",
		"SELECT p._resource_id, r.operation FROM patient p JOIN resources_latest r ON r.id = p._resource_id",
		"SELECT _resource_id FROM observation",
	}
	want := map[string]string{}
	for _, q := range queries {
		want[q] = rows(t, ref, q)
	}

	s, err := Open(ctx, "acme", root, Options{SpeedOverlap: time.Minute, Connections: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mu sync.Mutex
	creates := map[string]int{}
	s.Catalog().plan.trace = func(q string) {
		if strings.HasPrefix(q, "CREATE OR REPLACE VIEW \"") {
			mu.Lock()
			creates[strings.Fields(q)[4]]++
			mu.Unlock()
		}
	}
	const n = 24
	got := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var out strings.Builder
			_, errs[i] = s.Export(ctx, &out, queries[i%len(queries)], "csv", ExportOptions{})
			got[i] = out.String()
		})
	}
	wg.Wait()
	for i := range n {
		q := queries[i%len(queries)]
		if errs[i] != nil {
			t.Errorf("%s: %v", q, errs[i])
			continue
		}
		lines := strings.Split(strings.TrimSpace(got[i]), "\n")[1:]
		slices.Sort(lines)
		if g := strings.Join(lines, "\n") + "\n"; g != want[q] {
			t.Errorf("%s:\ngot\n%swant\n%s", q, g, want[q])
		}
	}
	for view, k := range creates {
		if k != 1 {
			t.Errorf("view %s made %d times", view, k)
		}
	}
	if creates[`"patient"`] != 1 || creates[`"resources_latest"`] != 1 {
		t.Errorf("views made: %v", creates)
	}
}
