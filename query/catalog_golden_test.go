package query

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/duckdb/duckdb-go/v2"

	"fhirlake/query/querytest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// observationChange is a change of a resource type the snapshots of these
// tests hold no state model for.
var observationChange = change{Type: "Observation", ID: "o1", Version: "1", Offset: 40,
	Fields: `"status":"final","code":{"text":"weight"},"subject":{"reference":"Patient/p1"}`}

// deviceChange is a change of a resource type without a typed view.
var deviceChange = change{Type: "Device", ID: "d1", Version: "1", Offset: 41}

// TestCatalogStatements pins the statements a build of the catalog runs,
// and the views it lists, for small lakes: empty, speed layer only, a
// snapshot alone, a snapshot with a speed tail (of its types or of
// another), and the rebuild after a new snapshot holds the tail, each once
// every view is made; and what the first statement naming one view makes
// in a new session. The
// golden files are under testdata/catalog; go test -update rewrites them.
func TestCatalogStatements(t *testing.T) {
	snap := func(t *testing.T, root, id string, age time.Duration) {
		publishSnapshot(t, root, id, time.Now().Add(-age).UTC(), 2, "id")
	}
	for _, tc := range []struct {
		name string
		// lake writes the lake the session opens; then, if set, change
		// alters it before the build traced.
		lake, change func(t *testing.T, root string)
		// only, when set, traces the first statement naming only these
		// views in a new session instead: what it makes.
		only []string
	}{
		{name: "empty", lake: func(t *testing.T, root string) {
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "speed", lake: func(t *testing.T, root string) {
			mergeLake(t, root, 0)
			querytest.WriteChanges(t, root, "acme", []change{observationChange, deviceChange})
		}},
		{name: "snapshot", lake: func(t *testing.T, root string) {
			querytest.WriteChanges(t, root, "acme", before)
			snap(t, root, "20260101T000000Z-gold01", time.Hour)
		}},
		{name: "snapshot_tail", lake: func(t *testing.T, root string) {
			mergeLake(t, root, 2)
			querytest.WriteChanges(t, root, "acme", []change{observationChange, deviceChange})
		}},
		{name: "snapshot_tail_recast", lake: func(t *testing.T, root string) {
			mergeLake(t, root, 2)
			recast(t, root, "20260101T000000Z-merge1", "int_patient__latest", "birth_date", "VARCHAR")
		}},
		{name: "snapshot_tail_other_type", lake: func(t *testing.T, root string) {
			querytest.WriteChanges(t, root, "acme", before)
			snap(t, root, "20260101T000000Z-gold01", time.Hour)
			querytest.WriteChanges(t, root, "acme", []change{observationChange})
		}},
		{name: "snapshot_tail_patient_only", lake: func(t *testing.T, root string) {
			mergeLake(t, root, 2)
			querytest.WriteChanges(t, root, "acme", []change{observationChange, deviceChange})
		}, only: []string{"patient"}},
		{name: "snapshot_tail_device_only", lake: func(t *testing.T, root string) {
			mergeLake(t, root, 2)
			querytest.WriteChanges(t, root, "acme", []change{observationChange, deviceChange})
		}, only: []string{"device"}},
		{name: "new_snapshot", lake: func(t *testing.T, root string) {
			mergeLake(t, root, 2)
			querytest.WriteChanges(t, root, "acme", []change{observationChange})
		}, change: func(t *testing.T, root string) {
			snap(t, root, "20260101T000000Z-gold02", time.Minute)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "acme")
			tc.lake(t, root)
			s, err := Open(context.Background(), "acme", root, Options{SpeedOverlap: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var got string
			if tc.only != nil {
				got = traceEnsure(t, s, tc.only)
			} else {
				// Every view made, as by a session that has used them all.
				if err := s.ensureAll(context.Background()); err != nil {
					t.Fatal(err)
				}
				if tc.change != nil {
					tc.change(t, root)
				}
				got = traceBuild(t, s)
			}
			golden := filepath.Join("testdata", "catalog", tc.name+".sql")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("the build differs from %s:\n%s", golden, firstDiff(got, string(want)))
			}
		})
	}
}

// recast rewrites a snapshot's model with one column cast to typ, as a
// dbt model may type a column otherwise than the speed files do.
func recast(t *testing.T, root, id, model, col, typ string) {
	t.Helper()
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	files, err := filepath.Glob(filepath.Join(root, "batch", id, model, "*.parquet"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no files of %s: %v", model, err)
	}
	for _, f := range files {
		q := fmt.Sprintf("COPY (SELECT * REPLACE (%[1]s::%[2]s AS %[1]s) FROM read_parquet('%[3]s')) TO '%[3]s.tmp' (FORMAT parquet)", col, typ, f)
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%v\n%s", err, q)
		}
		if err := os.Rename(f+".tmp", f); err != nil {
			t.Fatal(err)
		}
	}
}

// traceBuild rebuilds every view of the session as Refresh would once
// every view is made, against its current catalog, and returns the views listed and the statements run,
// with the lake's root spelt $LAKE.
func traceBuild(t *testing.T, s *Session) string {
	t.Helper()
	ctx := context.Background()
	scan, err := s.scanLake(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.plan(ctx, scan)
	if err != nil {
		t.Fatal(err)
	}
	var stmts []string
	p.trace = func(q string) { stmts = append(stmts, q) }
	units, err := p.list(ctx)
	if err != nil {
		t.Fatal(err)
	}
	built := newBuild(p, units, nil)
	if err := s.build(ctx, built, units.keys(), s.Catalog()); err != nil {
		t.Fatal(err)
	}
	c := &Catalog{units: units}
	c.record(built)
	var b strings.Builder
	fmt.Fprintf(&b, "-- speed files %d, changed %d\n-- views:\n", p.speedFiles, c.Changed)
	sort.Slice(built.tables, func(i, j int) bool { return built.tables[i].Name < built.tables[j].Name })
	for _, t := range built.tables {
		fmt.Fprintf(&b, "--   %s %s %s %s\n", t.Name, t.Kind, t.ResourceType, t.Source)
	}
	for _, q := range stmts {
		fmt.Fprintf(&b, "\n%s;\n", q)
	}
	return strings.ReplaceAll(b.String(), s.root, "$LAKE")
}

// traceEnsure makes the views names in s, as the first statement that
// names them does, and returns the views made and the statements run, with
// the lake's root spelt $LAKE.
func traceEnsure(t *testing.T, s *Session, names []string) string {
	t.Helper()
	var stmts []string
	s.Catalog().plan.trace = func(q string) { stmts = append(stmts, q) }
	defer func() { s.Catalog().plan.trace = nil }()
	if err := s.ensure(context.Background(), names); err != nil {
		t.Fatal(err)
	}
	cat := s.Catalog()
	var b strings.Builder
	fmt.Fprintf(&b, "-- speed files %d, changed %d\n-- views made: %s\n", cat.SpeedFiles, cat.Changed, strings.Join(cat.Made, ", "))
	for _, q := range stmts {
		fmt.Fprintf(&b, "\n%s;\n", q)
	}
	return strings.ReplaceAll(b.String(), s.root, "$LAKE")
}

// firstDiff shows the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\ngot  %q\nwant %q", i+1, gl, wl)
		}
	}
	return "same lines"
}
