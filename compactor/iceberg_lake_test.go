package compactor

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/iceberg-go/table"

	"fhirlake/catalog"
	"fhirlake/lake"
	"fhirlake/query/querytest"
)

// icebergDiff reads the table of a model with iceberg-go and counts the rows that
// differ from the model as fhirlake reads it (modelSQL), both ways, over every
// column of the table.
func icebergDiff(t *testing.T, cat *catalog.Catalog, root string, m *lake.Manifest, model string) (rows int64, diff int64) {
	t.Helper()
	db, err := openDuckDB()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return icebergDiffWith(t, db, cat, modelSQL(t, root, m, model), model)
}

// icebergDiffWith is icebergDiff with the model as DuckDB (db) reads it: merged, a
// relation of lake.MergeSQL.
func icebergDiffWith(t *testing.T, db *sql.DB, cat *catalog.Catalog, merged, model string) (rows int64, diff int64) {
	t.Helper()
	ctx := context.Background()
	tbl, err := cat.Load(ctx, TableName(model))
	if err != nil {
		t.Fatal(err)
	}
	at, err := tbl.Scan().ToArrowTable(ctx)
	if err != nil {
		t.Fatalf("scan %s: %v", model, err)
	}
	defer at.Release()
	out := filepath.Join(t.TempDir(), model+".parquet")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := pqarrow.WriteTable(at, f, 1<<16, nil, pqarrow.DefaultWriterProps()); err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, fld := range at.Schema().Fields() {
		cols = append(cols, `"`+fld.Name+`"`)
	}
	list := strings.Join(cols, ", ")
	q := fmt.Sprintf(`SELECT (SELECT count(*) FROM read_parquet('%[1]s')),
		(SELECT count(*) FROM (SELECT %[2]s FROM read_parquet('%[1]s') EXCEPT ALL SELECT %[2]s FROM %[3]s)) +
		(SELECT count(*) FROM (SELECT %[2]s FROM %[3]s EXCEPT ALL SELECT %[2]s FROM read_parquet('%[1]s')))`, out, list, merged)
	if err := db.QueryRow(q).Scan(&rows, &diff); err != nil {
		t.Fatalf("%s: %v", model, err)
	}
	return rows, diff
}

// TestCompactPublishesTheSnapshotAsIcebergTables: every model of each published
// snapshot reads through its Iceberg table (iceberg-go, position deletes applied) as
// fhirlake reads the snapshot, after a rebuild and after incremental runs whose
// state models are merged on read; the tables keep the snapshots expiry keeps.
func TestCompactPublishesTheSnapshotAsIcebergTables(t *testing.T) {
	t.Parallel() // see needDBTRunner
	runner := needDBTRunner(t)
	ctx := context.Background()
	ten, store := newTenant(t, "acme")
	opts := catalog.Options{Type: catalog.TypeSQL, URI: filepath.Join(t.TempDir(), "catalog.db"), Tenant: "acme",
		Warehouse: filepath.ToSlash(store.Root) + "/_iceberg"}
	ten.Iceberg = &opts
	c := newTestCompactor(t, runner, nil, func(o *Options) {
		o.Overlap = 0
		o.Timeout = 10 * time.Minute
		o.Expire.KeepSnapshots = 2
		o.Expire.OrphanGrace = 0
		// Never a rebuild: files written within the second of the watermark are read
		// again, and their resources count as changed.
		o.RebaseShare = 1e9
	})
	cat, err := catalog.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()

	// verify reads every table of m as the model fhirlake reads, and finds in each only
	// snapshots of the fhirlake snapshots expiry keeps.
	verify := func(step string, m *lake.Manifest) {
		t.Helper()
		for _, model := range m.ModelNames() {
			rows, diff := icebergDiff(t, cat, store.Root, m, model)
			if diff != 0 {
				t.Errorf("%s: table %s (%d rows) differs from model %s in %d rows", step, TableName(model), rows, model, diff)
			}
			tbl, err := cat.Load(ctx, TableName(model))
			if err != nil {
				t.Fatal(err)
			}
			if got := tbl.CurrentSnapshot().Summary.Properties[PropSnapshotID]; got != m.SnapshotID {
				t.Errorf("%s: table %s is at fhirlake snapshot %s, want %s", step, TableName(model), got, m.SnapshotID)
			}
			checkMetadataReached(t, step, tbl)
			keep := map[string]bool{m.SnapshotID: true}
			for _, id := range KeptSnapshots(m, c.opts.Expire) {
				keep[id] = true
			}
			for _, s := range tbl.Metadata().Snapshots() {
				if id := s.Summary.Properties[PropSnapshotID]; !keep[id] {
					t.Errorf("%s: table %s keeps a snapshot of %s, which expiry deleted", step, TableName(model), id)
				}
			}
		}
	}
	check := func(step string, wantMerged bool) *lake.Manifest {
		t.Helper()
		res, err := c.Compact(ctx, ten)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if res.ExpireErr != nil {
			t.Fatalf("%s: expiry: %v", step, res.ExpireErr)
		}
		m := snapshotManifest(t, store.Root, res.SnapshotID)
		if got := m.Models[lake.StateModel(lake.RawDataset)].Merged(); got != wantMerged {
			t.Fatalf("%s: the raw state is merged on read: %t, want %t (full refresh %t: %s; up to date %t; snapshot %s previous %s, %d speed files, raw %+v)", step, got, wantMerged,
				res.FullRefresh, res.Reason, res.UpToDate, m.SnapshotID, m.Previous, m.SpeedFiles, m.Models[lake.StateModel(lake.RawDataset)])
		}
		verify(step, m)
		return m
	}

	querytest.WriteChanges(t, store.Root, "acme", everyViewChanges(0, "-a"))
	querytest.WriteChanges(t, store.Root, "acme", everyViewChanges(100, "-b"))
	first := check("rebuild", false)
	if n := first.Models[lake.StateModel(lake.RawDataset)].Rows; n < 30 {
		t.Fatalf("the rebuild holds %d resources", n)
	}

	// An update and a delete: the next runs are incremental, the state merged on read.
	querytest.WriteChanges(t, store.Root, "acme", []querytest.Change{
		{Type: "Patient", ID: "p1-a", Version: "3", Offset: 200, Fields: `"gender":"male","birthDate":"1980-01-04"`},
		{Type: "Patient", ID: "p2-a", Version: "2", Delete: true, Offset: 201},
	})
	second := check("incremental", true)
	deletes := filepath.Join(store.Root, filepath.FromSlash(lake.ModelKey(second.SnapshotID, lake.StateModel(lake.RawDataset), DeletesFile)))
	if _, err := os.Stat(deletes); err != nil {
		t.Fatalf("the merged state has no position deletes: %v", err)
	}
	querytest.WriteChanges(t, store.Root, "acme", []querytest.Change{
		{Type: "Patient", ID: "p1-b", Version: "3", Offset: 202, Fields: `"gender":"other"`},
	})
	third := check("second incremental", true)
	// The first snapshot is beyond keep_snapshots: its files are gone, and so are the
	// tables' snapshots that referenced them.
	if _, err := os.Stat(filepath.Join(store.Root, filepath.FromSlash(lake.SnapshotManifestKey(first.SnapshotID)))); err == nil &&
		!contains(KeptSnapshots(third, c.opts.Expire), first.SnapshotID) {
		t.Errorf("snapshot %s was not expired", first.SnapshotID)
	}

	// Nothing new: the tables stay as they are.
	tbl, err := cat.Load(ctx, TableName(lake.StateModel(lake.RawDataset)))
	if err != nil {
		t.Fatal(err)
	}
	before := tbl.CurrentSnapshot().SnapshotID
	if res, err := c.Compact(ctx, ten); err != nil || !res.UpToDate {
		t.Fatalf("a run with nothing new: %+v, %v", res, err)
	}
	if tbl, err = cat.Load(ctx, TableName(lake.StateModel(lake.RawDataset))); err != nil || tbl.CurrentSnapshot().SnapshotID != before {
		t.Fatalf("a run with nothing new committed to the table (err %v)", err)
	}

	// An erasure republishes the snapshot without the patient: the tables follow, and
	// keep no snapshot of their own that references an earlier one.
	er, err := c.Erase(ctx, ten, EraseRequest{Patient: "p1-a"})
	if err != nil {
		t.Fatal(err)
	}
	if !er.Republished {
		t.Fatalf("the erasure did not republish: %+v", er)
	}
	erased := snapshotManifest(t, store.Root, er.Snapshot)
	verify("erasure", erased)
	for _, model := range erased.ModelNames() {
		tbl, err := cat.Load(ctx, TableName(model))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range tbl.Metadata().Snapshots() {
			if id := s.Summary.Properties[PropSnapshotID]; id != erased.SnapshotID {
				t.Errorf("after the erasure table %s keeps a snapshot of %s", TableName(model), id)
			}
		}
		rows, diff := icebergDiff(t, cat, store.Root, erased, model)
		if diff != 0 {
			t.Errorf("after the erasure table %s (%d rows) differs from its model", TableName(model), rows)
		}
	}
}

// checkMetadataReached: every file of the table's metadata directory is one its
// metadata reaches (its metadata file and the earlier ones it lists, the kept
// snapshots' manifest lists and manifests), so the directory stays bounded by the
// snapshots kept, and at most catalog.MetadataVersionsKept earlier metadata files.
func checkMetadataReached(t *testing.T, step string, tbl *table.Table) {
	t.Helper()
	fs, err := tbl.FS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	reached := map[string]bool{tbl.MetadataLocation(): true}
	for e := range tbl.Metadata().PreviousFiles() {
		reached[e.MetadataFile] = true
	}
	for _, s := range tbl.Metadata().Snapshots() {
		reached[s.ManifestList] = true
		mfs, err := s.Manifests(fs)
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			reached[mf.FilePath()] = true
		}
	}
	dir := catalog.MetadataDir(tbl)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	versions := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".metadata.json") {
			versions++
		}
		if !reached[dir+"/"+e.Name()] {
			t.Errorf("%s: table %s: %s is in its metadata directory, and nothing reaches it", step, tbl.Identifier(), e.Name())
		}
	}
	if versions > catalog.MetadataVersionsKept+1 {
		t.Errorf("%s: table %s keeps %d metadata files, want at most %d", step, tbl.Identifier(), versions, catalog.MetadataVersionsKept+1)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
