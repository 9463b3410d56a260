package catalog_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"

	"github.com/apache/iceberg-go/table"

	"fhirlake/catalog"
	"fhirlake/lake"
)

// lakeDir is a local tenant store with a SQLite catalog beside it.
type lakeDir struct {
	t    *testing.T
	root string
	db   string
}

func newLake(t *testing.T) *lakeDir {
	t.Helper()
	root := t.TempDir()
	return &lakeDir{t: t, root: root, db: filepath.Join(t.TempDir(), "catalog.db")}
}

func (l *lakeDir) open(ctx context.Context) *catalog.Catalog {
	l.t.Helper()
	c, err := catalog.Open(ctx, catalog.Options{
		Type: catalog.TypeSQL, URI: l.db, Tenant: "acme", Warehouse: filepath.Join(l.root, "_iceberg"),
	})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(c.Close)
	return c
}

// writeSpeed writes a raw speed file of n changes (offsets first..first+n-1) through
// DuckDB, as the consumer does, and returns it as a File.
func (l *lakeDir) writeSpeed(first, n int) catalog.File {
	l.t.Helper()
	key := lake.Key(lake.RawDataset, time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), "fhir.notifications", 0, int64(first), int64(first+n-1))
	path := filepath.Join(l.root, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		l.t.Fatal(err)
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		l.t.Fatal(err)
	}
	defer db.Close()
	q := fmt.Sprintf(`COPY (SELECT 'acme' AS tenant, 'Patient' AS resource_type, 'p' || i AS id,
		'1' AS version_id, TIMESTAMPTZ '2026-01-02 00:00:00+00' AS last_updated, 'upsert' AS operation,
		'fhir.notifications' AS topic, 0::INTEGER AS "partition", i::BIGINT AS "offset",
		TIMESTAMPTZ '2026-01-02 00:00:01+00' AS ingest_time, '{}' AS resource
		FROM range(%d, %d) t(i)) TO '%s' (FORMAT parquet, COMPRESSION zstd)`, first, first+n, path)
	if _, err := db.Exec(q); err != nil {
		l.t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		l.t.Fatal(err)
	}
	return catalog.File{Location: path, Size: st.Size(), Modified: st.ModTime()}
}

func rows(t *testing.T, tbl *table.Table) int64 {
	t.Helper()
	at, err := tbl.Scan().ToArrowTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer at.Release()
	return at.NumRows()
}

func TestSyncRegistersEachFileOnce(t *testing.T) {
	ctx := context.Background()
	l := newLake(t)
	c := l.open(ctx)
	tbl, err := c.Table(ctx, lake.RawDataset, lake.RawSchema)
	if err != nil {
		t.Fatal(err)
	}
	files := []catalog.File{l.writeSpeed(0, 3), l.writeSpeed(3, 2)}
	change, tbl, err := catalog.Sync(ctx, tbl, files, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(change.Add) != 2 || rows(t, tbl) != 5 {
		t.Fatalf("first sync: added %v, %d rows; want 2 files, 5 rows", change.Add, rows(t, tbl))
	}
	snap := tbl.CurrentSnapshot()
	if got := snap.Summary.Properties[catalog.PropFilesAdded]; got != "2" {
		t.Errorf("summary %s = %q, want 2", catalog.PropFilesAdded, got)
	}

	// the same listing again, from a catalog opened anew (a restarted registrar)
	tbl2, err := l.open(ctx).Table(ctx, lake.RawDataset, lake.RawSchema)
	if err != nil {
		t.Fatal(err)
	}
	change, tbl2, err = catalog.Sync(ctx, tbl2, files, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !change.Empty() || tbl2.CurrentSnapshot().SnapshotID != snap.SnapshotID || rows(t, tbl2) != 5 {
		t.Fatalf("second sync changed the table: %+v, %d rows", change, rows(t, tbl2))
	}

	files = append(files, l.writeSpeed(5, 4))
	change, tbl2, err = catalog.Sync(ctx, tbl2, files, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(change.Add) != 1 || !strings.HasSuffix(change.Add[0], "fhir.notifications-0-5-8.parquet") || rows(t, tbl2) != 9 {
		t.Fatalf("third sync: %+v, %d rows; want the new file, 9 rows", change, rows(t, tbl2))
	}
}

func TestSyncDropsExpiredAndReplacesRewrittenFiles(t *testing.T) {
	ctx := context.Background()
	l := newLake(t)
	tbl, err := l.open(ctx).Table(ctx, lake.RawDataset, lake.RawSchema)
	if err != nil {
		t.Fatal(err)
	}
	a, b := l.writeSpeed(0, 3), l.writeSpeed(3, 5)
	if _, tbl, err = catalog.Sync(ctx, tbl, []catalog.File{a, b}, nil); err != nil {
		t.Fatal(err)
	}
	// the compactor expired a; an erasure rewrote b under its own key with fewer rows
	if err := os.Remove(a.Location); err != nil {
		t.Fatal(err)
	}
	b2 := l.writeSpeed(3, 2)
	if err := os.Rename(b2.Location, b.Location); err != nil {
		t.Fatal(err)
	}
	b2.Location = b.Location
	if b2.Size == b.Size {
		t.Fatal("the rewritten file has the same size")
	}
	change, tbl, err := catalog.Sync(ctx, tbl, []catalog.File{b2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(change.Remove) != 2 || len(change.Add) != 1 {
		t.Fatalf("change %+v, want a and b removed, b added", change)
	}
	if got := rows(t, tbl); got != 2 {
		reg, _ := catalog.Registered(ctx, tbl)
		t.Fatalf("%d rows after expiry and rewrite, want 2; registered %v", got, reg)
	}
}

func TestSyncRefusesAStaleWriter(t *testing.T) {
	ctx := context.Background()
	l := newLake(t)
	c := l.open(ctx)
	first, err := c.Table(ctx, lake.RawDataset, lake.RawSchema)
	if err != nil {
		t.Fatal(err)
	}
	a := l.writeSpeed(0, 3)
	if _, _, err := catalog.Sync(ctx, first, []catalog.File{a}, nil); err != nil {
		t.Fatal(err)
	}
	stale, err := c.Table(ctx, lake.RawDataset, lake.RawSchema)
	if err != nil {
		t.Fatal(err)
	}
	b := l.writeSpeed(3, 2)
	if _, _, err := catalog.Sync(ctx, stale, []catalog.File{a, b}, nil); err != nil {
		t.Fatal(err)
	}
	// stale read the table before b was committed: its view of the files is old
	c2 := l.writeSpeed(5, 1)
	_, _, err = catalog.Sync(ctx, first, []catalog.File{a, c2}, nil)
	if !errors.Is(err, catalog.ErrStale) {
		t.Fatalf("a writer that read before another's commit: err %v, want ErrStale", err)
	}
	now, err := c.Table(ctx, lake.RawDataset, lake.RawSchema)
	if err != nil {
		t.Fatal(err)
	}
	if got := rows(t, now); got != 5 {
		t.Fatalf("%d rows after the refused commit, want 5", got)
	}
}

func TestExpireKeepsTheData(t *testing.T) {
	ctx := context.Background()
	l := newLake(t)
	tbl, err := l.open(ctx).Table(ctx, lake.RawDataset, lake.RawSchema)
	if err != nil {
		t.Fatal(err)
	}
	var files []catalog.File
	for i := 0; i < 3; i++ {
		files = append(files, l.writeSpeed(i*2, 2))
		if _, tbl, err = catalog.Sync(ctx, tbl, files, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(tbl.Metadata().Snapshots()); n != 3 {
		t.Fatalf("%d snapshots before expiry, want 3", n)
	}
	tbl, err = catalog.Expire(ctx, tbl, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tbl.Metadata().Snapshots()); n != 1 {
		t.Fatalf("%d snapshots after expiry, want 1", n)
	}
	for _, f := range files {
		if _, err := os.Stat(f.Location); err != nil {
			t.Fatalf("expiry touched a speed file: %v", err)
		}
	}
	if got := rows(t, tbl); got != 6 {
		t.Fatalf("%d rows after expiry, want 6", got)
	}
}

func TestOpenRefusesBadOptions(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		o    catalog.Options
		want string
	}{
		{catalog.Options{Type: "hive", URI: "x", Tenant: "acme", Warehouse: "/w"}, `unknown type "hive"`},
		{catalog.Options{Type: "sql", Tenant: "acme", Warehouse: "/w"}, "a uri is required"},
		{catalog.Options{Type: "sql", URI: "x.db", Warehouse: "/w"}, "a tenant is required"},
		{catalog.Options{Type: "rest", URI: "http://x", Tenant: "acme"}, "a warehouse location is required"},
	} {
		_, err := catalog.Open(ctx, tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%+v): %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestDiff(t *testing.T) {
	reg := map[string]int64{"a": 1, "b": 2, "c": 3}
	got := catalog.Diff(reg, []catalog.File{{Location: "a", Size: 1}, {Location: "b", Size: 5}, {Location: "d", Size: 1}, {Location: "d", Size: 1}})
	if fmt.Sprint(got.Add) != "[b d]" || fmt.Sprint(got.Remove) != "[b c]" {
		t.Fatalf("Diff = %+v", got)
	}
}
