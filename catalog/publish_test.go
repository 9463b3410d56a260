package catalog_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"fhirlake/catalog"
)

// stateDir writes a state model's parts through DuckDB, as the compactor does: rows
// of (resource_type, resource_id, v).
type stateDir struct {
	t    *testing.T
	root string
	db   *sql.DB
}

func newStateDir(t *testing.T, root string) *stateDir {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &stateDir{t: t, root: root, db: db}
}

// write writes rows "id:v,…" of Patients to key and returns its path.
func (s *stateDir) write(key, rows string) string {
	s.t.Helper()
	path := filepath.Join(s.root, key)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		s.t.Fatal(err)
	}
	var values []string
	for _, r := range strings.Split(rows, ",") {
		id, v, _ := strings.Cut(r, ":")
		values = append(values, fmt.Sprintf("('Patient', '%s', %s::BIGINT)", id, v))
	}
	q := fmt.Sprintf("COPY (SELECT * FROM (VALUES %s) t(resource_type, resource_id, v) ORDER BY resource_id) TO '%s' (FORMAT parquet)",
		strings.Join(values, ", "), path)
	if _, err := s.db.Exec(q); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// deletes writes the position deletes of base's rows whose keys are in changed.
func (s *stateDir) deletes(key string, base []string, changed string) string {
	s.t.Helper()
	out := filepath.Join(s.root, key)
	files := make([]catalog.BaseFile, len(base))
	for i, b := range base {
		files[i] = catalog.BaseFile{Path: b, Location: b}
	}
	n, err := catalog.WritePositionDeletes(context.Background(), s.db, files, []string{changed}, []string{"resource_type", "resource_id"}, out)
	if err != nil {
		s.t.Fatal(err)
	}
	if n == 0 {
		s.t.Fatalf("no rows of %v deleted by %s", base, changed)
	}
	return out
}

// scan reads the table with iceberg-go: "id:v" rows, sorted.
func scan(t *testing.T, tbl *table.Table) []string {
	t.Helper()
	at, err := tbl.Scan().ToArrowTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer at.Release()
	rdr := array.NewTableReader(at, 0)
	defer rdr.Release()
	var out []string
	for rdr.Next() {
		rec := rdr.RecordBatch()
		idc := rec.Column(rec.Schema().FieldIndices("resource_id")[0]).(*array.String)
		vc := rec.Column(rec.Schema().FieldIndices("v")[0]).(*array.Int64)
		for i := 0; i < int(rec.NumRows()); i++ {
			out = append(out, fmt.Sprintf("%s:%d", idc.Value(i), vc.Value(i)))
		}
	}
	sort.Strings(out)
	return out
}

// duckScan reads the table's current metadata with DuckDB: the rows its merge reads.
func duckMerge(t *testing.T, db *sql.DB, base []string, changed, delta string) []string {
	t.Helper()
	q := "SELECT resource_id || ':' || v FROM (SELECT * FROM read_parquet(['" + strings.Join(base, "','") + "']) b ANTI JOIN read_parquet('" + changed +
		"') c USING (resource_type, resource_id) UNION ALL SELECT * FROM read_parquet('" + delta + "')) ORDER BY 1"
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func TestPublishMergedStateReadsAsTheMerge(t *testing.T) {
	ctx := context.Background()
	l := newLake(t)
	s := newStateDir(t, l.root)
	c := l.open(ctx)

	base := []string{
		s.write("batch/s1/m/data_0.parquet", "p1:1,p2:1,p3:1,p4:1"),
		s.write("batch/s1/m/data_1.parquet", "p5:1,p6:1"),
	}
	schema, err := c.FileSchema(ctx, base[0])
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := c.Table(ctx, "m_latest", schema)
	if err != nil {
		t.Fatal(err)
	}
	props := iceberg.Properties{"fhirlake.snapshot-id": "s1"}
	tbl, p, err := catalog.Publish(ctx, tbl, catalog.FileSet{Data: base}, props)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Added) != 2 || p.Snapshots != 1 {
		t.Fatalf("first publication: %+v", p)
	}
	if got, want := strings.Join(scan(t, tbl), ","), "p1:1,p2:1,p3:1,p4:1,p5:1,p6:1"; got != want {
		t.Fatalf("base: got %s, want %s", got, want)
	}

	// An incremental snapshot: p2 updated, p5 deleted (changed, no delta row).
	changed := s.write("batch/s2/m/changed_0.parquet", "p2:0,p5:0")
	delta := s.write("batch/s2/m/delta_0.parquet", "p2:2")
	dels := s.deletes("batch/s2/m/deletes_0.parquet", base, changed)
	set := catalog.FileSet{Data: append(append([]string{}, base...), delta), Deletes: []string{dels}}
	tbl, p, err = catalog.Publish(ctx, tbl, set, iceberg.Properties{"fhirlake.snapshot-id": "s2"})
	if err != nil {
		t.Fatal(err)
	}
	want := duckMerge(t, s.db, base, changed, delta)
	if got := scan(t, tbl); strings.Join(got, ",") != strings.Join(want, ",") || len(want) != 5 {
		t.Fatalf("merged: iceberg reads %v, the merge %v", got, want)
	}
	if len(p.Added) != 1 || len(p.DeletesAdded) != 1 || len(p.Removed) != 0 {
		t.Fatalf("incremental publication: %+v", p)
	}

	// The same set again commits nothing.
	snap := tbl.CurrentSnapshot().SnapshotID
	tbl, p, err = catalog.Publish(ctx, tbl, set, iceberg.Properties{"fhirlake.snapshot-id": "s2"})
	if err != nil || p.Snapshots != 0 || tbl.CurrentSnapshot().SnapshotID != snap {
		t.Fatalf("republication: %+v, err %v", p, err)
	}

	// The next incremental snapshot replaces the delta and the deletes; the base stays.
	changed3 := s.write("batch/s3/m/changed_0.parquet", "p2:0,p5:0,p6:0,p9:0")
	delta3 := s.write("batch/s3/m/delta_0.parquet", "p2:2,p6:3,p9:3")
	dels3 := s.deletes("batch/s3/m/deletes_0.parquet", base, changed3)
	tbl, p, err = catalog.Publish(ctx, tbl, catalog.FileSet{Data: append(append([]string{}, base...), delta3), Deletes: []string{dels3}},
		iceberg.Properties{"fhirlake.snapshot-id": "s3"})
	if err != nil {
		t.Fatal(err)
	}
	want = duckMerge(t, s.db, base, changed3, delta3)
	if got := scan(t, tbl); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("second merge: iceberg reads %v, the merge %v", got, want)
	}
	if strings.Join(p.Removed, ",") != delta || strings.Join(p.DeletesRemoved, ",") != dels {
		t.Fatalf("second incremental publication: %+v", p)
	}

	// A rebuild: a new base alone; every earlier file and delete goes.
	rebuilt := s.write("batch/s4/m/data_0.parquet", "p1:4,p2:4")
	tbl, p, err = catalog.Publish(ctx, tbl, catalog.FileSet{Data: []string{rebuilt}}, iceberg.Properties{"fhirlake.snapshot-id": "s4"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(scan(t, tbl), ","); got != "p1:4,p2:4" {
		t.Fatalf("rebuild: iceberg reads %s", got)
	}
	if len(p.Removed) != 3 || len(p.DeletesRemoved) != 1 {
		t.Fatalf("rebuild publication: %+v", p)
	}
	for _, snap := range tbl.Metadata().Snapshots() {
		if snap.Summary == nil || snap.Summary.Properties["fhirlake.snapshot-id"] == "" {
			t.Fatalf("snapshot %d has no fhirlake snapshot id: %+v", snap.SnapshotID, snap.Summary)
		}
	}
}

func TestPublishRefusesAStaleWriter(t *testing.T) {
	ctx := context.Background()
	l := newLake(t)
	s := newStateDir(t, l.root)
	c := l.open(ctx)
	a := s.write("batch/s1/m/data_0.parquet", "p1:1")
	schema, err := c.FileSchema(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := c.Table(ctx, "m", schema)
	if err != nil {
		t.Fatal(err)
	}
	stale := tbl
	if tbl, _, err = catalog.Publish(ctx, tbl, catalog.FileSet{Data: []string{a}}, nil); err != nil {
		t.Fatal(err)
	}
	b := s.write("batch/s2/m/data_0.parquet", "p1:2")
	_, _, err = catalog.Publish(ctx, stale, catalog.FileSet{Data: []string{b}}, nil)
	if err == nil || !strings.Contains(err.Error(), catalog.ErrStale.Error()) {
		t.Fatalf("a stale writer: err %v", err)
	}
	if got := strings.Join(scan(t, tbl), ","); got != "p1:1" {
		t.Fatalf("after the refused commit the table reads %s", got)
	}
}

func TestPublishRefusesAFileThatIsNoPositionDelete(t *testing.T) {
	ctx := context.Background()
	l := newLake(t)
	s := newStateDir(t, l.root)
	c := l.open(ctx)
	a := s.write("batch/s1/m/data_0.parquet", "p1:1")
	schema, err := c.FileSchema(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := c.Table(ctx, "m", schema)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = catalog.Publish(ctx, tbl, catalog.FileSet{Data: []string{a}, Deletes: []string{a}}, nil)
	if err == nil || !strings.Contains(err.Error(), "not a position delete file") {
		t.Fatalf("a data file as deletes: err %v", err)
	}
}
