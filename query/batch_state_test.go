package query

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duckdb/duckdb-go/v2"

	"fhirlake/lake"
)

// TestMergeOnReadSnapshot: a snapshot whose state models are merged on read — a base
// whose rows of some resources are stale, those resources' keys as changed and their
// current rows as the delta — reads as the same state whole: every view equals the
// speed layer's alone, with no stale row and none twice.
func TestMergeOnReadSnapshot(t *testing.T) {
	ctx := context.Background()
	ref := filepath.Join(t.TempDir(), "acme")
	mergeLake(t, ref, 0)
	speedOnly, err := Open(ctx, "acme", ref, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer speedOnly.Close()

	root := filepath.Join(t.TempDir(), "acme")
	mergeLake(t, root, 1)
	// p4 changes beside the snapshot too (a late older version), p5 does not.
	splitSnapshot(t, root, "20260101T000000Z-merge1", "p4", "p5")
	s, err := Open(ctx, "acme", root, Options{SpeedOverlap: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, q := range []string{
		"SELECT _resource_id, _version_id, gender FROM patient",
		"SELECT * EXCLUDE (_ingest_time, id) FROM patient",
		"SELECT id, version_id, operation FROM resources_latest",
		"SELECT * EXCLUDE (ingest_time, resource) FROM resources_latest",
		"SELECT id, resource::JSON->>'gender' FROM resources",
		"SELECT count(*) FROM patient",
	} {
		if got, want := rows(t, s, q), rows(t, speedOnly, q); got != want {
			t.Errorf("%s:\nmerged on read:\n%s\nspeed only:\n%s", q, got, want)
		}
	}
}

// splitSnapshot turns the state models of snapshot id (publishSnapshot's, one file
// each) into a base, changed keys and a delta: the base's rows of the resources ids
// made stale, the keys of those resources, and their rows as they were.
func splitSnapshot(t *testing.T, root, id string, ids ...string) {
	t.Helper()
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	in := "('" + strings.Join(ids, "', '") + "')"
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(lake.ManifestKey)))
	if err != nil {
		t.Fatal(err)
	}
	m, err := lake.DecodeManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	for model, stale := range map[string]string{
		"int_resources__latest": "replace(resource, 'male', 'stale') AS resource",
		"int_patient__latest":   "'stale' AS gender",
	} {
		mod := m.Models[model]
		base := filepath.Join(root, filepath.FromSlash(mod.Files[0]))
		key := func(f string) string { return lake.ModelKey(id, model, f) }
		path := func(f string) string { return filepath.Join(root, filepath.FromSlash(key(f))) }
		for _, q := range []string{
			fmt.Sprintf("COPY (SELECT * FROM read_parquet('%s') WHERE resource_id IN %s) TO '%s'", base, in, path("delta_0.parquet")),
			fmt.Sprintf("COPY (SELECT DISTINCT resource_type, resource_id FROM read_parquet('%s') WHERE resource_id IN %s) TO '%s'", base, in, path("changed_0.parquet")),
			fmt.Sprintf("COPY (SELECT * FROM read_parquet('%[1]s') WHERE resource_id NOT IN %[2]s UNION ALL BY NAME SELECT * REPLACE (%[3]s) FROM read_parquet('%[1]s') WHERE resource_id IN %[2]s) TO '%[4]s'",
				base, in, stale, path("base.parquet")),
		} {
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("%v\n%s", err, q)
			}
		}
		if err := os.Rename(path("base.parquet"), base); err != nil {
			t.Fatal(err)
		}
		mod.Changed = &lake.Part{Rows: int64(len(ids)), Files: []string{key("changed_0.parquet")}}
		mod.Delta = &lake.Part{Rows: int64(len(ids)), Files: []string{key("delta_0.parquet")}}
		m.Models[model] = mod
	}
	m.Version = lake.ManifestVersion
	b, err = m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, filepath.FromSlash(lake.ManifestKey)), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
