package registrar_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"fhirlake/catalog"
	"fhirlake/lake"
	"fhirlake/registrar"
	"fhirlake/sink"
)

// TestExpiryRemovesTheTablesOrphanMetadata: pass after pass, each adding a speed file,
// a change table's metadata directory holds only what its kept snapshots reach (their
// manifest lists and manifests, the current metadata file and the few earlier ones it
// lists), and the table still reads every file.
func TestExpiryRemovesTheTablesOrphanMetadata(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st, err := sink.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join("testdata", "resources.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	o := catalog.Options{Type: catalog.TypeSQL, URI: filepath.Join(t.TempDir(), "catalog.db"), Tenant: "acme", Warehouse: filepath.Join(root, "_iceberg")}
	r, err := registrar.New(registrar.Options{
		Tenants: []registrar.Tenant{{Name: "acme", Store: st, Catalog: o}},
		Schemas: map[string]*arrow.Schema{lake.RawDataset: lake.RawSchema},
		// every snapshot but the newest two expires at once, its metadata with it
		KeepSnapshots: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	const passes = 12
	for i := range passes {
		key := lake.Key(lake.RawDataset, time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), "t", 0, int64(i), int64(i))
		p := filepath.Join(root, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Pass(ctx); err != nil {
			t.Fatalf("pass %d: %v", i, err)
		}
	}

	cat, err := catalog.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	tbl, err := cat.Load(ctx, lake.RawDataset)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := tbl.FS(ctx)
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
	var orphans []string
	for _, e := range entries {
		if !reached[dir+"/"+e.Name()] {
			orphans = append(orphans, e.Name())
		}
	}
	if len(orphans) > 0 {
		t.Errorf("after %d passes the metadata directory holds %d files (of %d) nothing reaches:\n%s", passes, len(orphans), len(entries), strings.Join(orphans, "\n"))
	}
	if n := len(tbl.Metadata().Snapshots()); n > 2 {
		t.Errorf("the table keeps %d snapshots, want 2", n)
	}

	at, err := tbl.Scan().ToArrowTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer at.Release()
	files, err := catalog.Registered(ctx, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != passes || at.NumRows() == 0 || at.NumRows()%passes != 0 {
		t.Errorf("the table holds %d files and %d rows, want %d files of the same rows", len(files), at.NumRows(), passes)
	}
}
