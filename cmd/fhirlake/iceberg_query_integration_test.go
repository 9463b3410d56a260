//go:build integration

package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fhirlake/lake"
	"fhirlake/sink"
)

// TestIntegrationQueryReadsIcebergSnapshot: with an iceberg section, `fhirlake
// query` reads the compactor's snapshot through the Iceberg tables that
// _manifest/iceberg.json names — position deletes applied by DuckDB's
// iceberg_scan, with the tenant's key only — and answers exactly as from the
// snapshot's files; a pointer naming another bucket is refused with a warning.
func TestIntegrationQueryReadsIcebergSnapshot(t *testing.T) {
	st := needStack(t)
	needDBT(t)
	needIceberg(t)
	if os.Getenv("FHIRLAKE_ICEBERG_EXTENSION") == "" || os.Getenv("FHIRLAKE_AVRO_EXTENSION") == "" {
		t.Skip("FHIRLAKE_ICEBERG_EXTENSION and FHIRLAKE_AVRO_EXTENSION unset (eval \"$(deploy/local/stack env)\")")
	}
	ctx := context.Background()
	tenant := "acme"
	r := newRun(t, st, []string{tenant}, bucket, compactSettings+"  overlap: 0s\n  rebase_share: 0.9\n")
	merged, err := mergeYAML(readFile(t, r.config), "iceberg:\n  catalog: sql\n  uri: \"\"\n  uri_env: FHIRLAKE_STACK_POSTGRES_URI\n  warehouse: _iceberg_query\n  name: "+r.id+"\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.config, []byte(merged), 0o644); err != nil {
		t.Fatal(err)
	}
	r.fhirlake(t, "topics", "create")
	s := r.generate(t, st, "--tenants", tenant, "--patients", "40", "--seed", "37",
		"--updates", "0.3", "--deletes", "0.15", "--malformed", "0", "--unroutable", "0")
	store := r.tenantStore(t, st, tenant)

	// A full run, then an incremental one with updates and deletes: merged models
	// whose tables carry position deletes.
	s.produce(t, s.total()/2)
	r.consumeAll(t, st)
	r.mustCompact(t)
	var firstPtr bytes.Buffer
	if err := store.Get(ctx, lake.IcebergKey, &firstPtr); err != nil {
		t.Fatalf("no %s after the first run: %v", lake.IcebergKey, err)
	}
	s.produce(t, -1)
	r.consumeAll(t, st)
	r.mustCompact(t)
	m, err := sink.ReadManifest(ctx, store)
	if err != nil || m == nil {
		t.Fatalf("manifest %v, %v", m, err)
	}
	var mergedModels []string
	for _, name := range m.ModelNames() {
		if m.Models[name].Merged() && len(m.Models[name].Changed.PartFiles()) > 0 {
			mergedModels = append(mergedModels, name)
		}
	}
	if len(mergedModels) == 0 {
		t.Fatal("the incremental run merged no model on read")
	}

	var ptr bytes.Buffer
	if err := store.Get(ctx, lake.IcebergKey, &ptr); err != nil {
		t.Fatalf("no %s after the tables' commits: %v", lake.IcebergKey, err)
	}
	p, err := lake.DecodeIcebergPointer(ptr.Bytes(), strings.TrimSuffix(store.URL(), "/"))
	if err != nil {
		t.Fatal(err)
	}
	if p.SnapshotID != m.SnapshotID || len(p.Tables) != len(m.Models) {
		t.Fatalf("%s names snapshot %s with %d tables; the lake's is %s with %d models", lake.IcebergKey, p.SnapshotID, len(p.Tables), m.SnapshotID, len(m.Models))
	}

	// One answer for many questions: counts per type, the latest versions, one
	// mart's rows, every mart's count, a typed view's rows.
	parts := []string{
		`(SELECT coalesce(string_agg(resource_type || ':' || n, ',' ORDER BY resource_type), '') FROM (SELECT resource_type, count(*) AS n FROM resources GROUP BY 1))`,
		`(SELECT md5(coalesce(string_agg(resource_type || '/' || id || '/' || coalesce(version_id, '') || '/' || md5(resource::VARCHAR), ',' ORDER BY resource_type, id), '')) FROM resources_latest)`,
		`(SELECT md5(coalesce(string_agg(patient_id || '/' || coalesce(version_id, '') || '/' || coalesce(gender, '') || '/' || coalesce(CAST(birth_date AS VARCHAR), ''), ',' ORDER BY patient_id), '')) FROM patients)`,
		`(SELECT count(*)::VARCHAR || '/' || md5(coalesce(string_agg(_resource_id || '/' || coalesce(_version_id, ''), ',' ORDER BY _resource_id, _row), '')) FROM observation)`,
	}
	for _, name := range m.ModelNames() {
		if _, state := lake.ParseStateModel(name); !state {
			parts = append(parts, "'"+name+"=' || (SELECT count(*) FROM "+name+")")
		}
	}
	question := "SELECT " + strings.Join(parts, " || ' | ' || ")
	ask := func(step string) (answer, stderr string, err error) {
		t.Helper()
		c := r.cmd(ctx, "query", "--tenant", tenant, "--format", "csv", question)
		var errb bytes.Buffer
		c.Stderr = &errb
		out, err := c.Output()
		if err != nil {
			return "", errb.String(), err
		}
		rec, err := csv.NewReader(strings.NewReader(lastLine(string(out)))).Read()
		if err != nil || len(rec) != 1 {
			t.Fatalf("%s: fhirlake query: %q (%v)", step, out, err)
		}
		return rec[0], errb.String(), nil
	}
	mustAsk := func(step string) (string, string) {
		t.Helper()
		a, e, err := ask(step)
		if err != nil {
			t.Fatalf("%s: fhirlake query: %v\n%s", step, err, e)
		}
		return a, e
	}
	put := func(key string, body []byte) {
		t.Helper()
		f := filepath.Join(t.TempDir(), "body")
		if err := os.WriteFile(f, body, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := store.Put(ctx, key, f); err != nil {
			t.Fatal(err)
		}
	}

	viaTables, _ := mustAsk("through the tables")
	if err := store.Delete(ctx, lake.IcebergKey); err != nil {
		t.Fatal(err)
	}
	viaFiles, _ := mustAsk("from the files")
	if viaTables != viaFiles {
		t.Fatalf("through the Iceberg tables:\n%s\nfrom the snapshot's files:\n%s", viaTables, viaFiles)
	}
	t.Logf("snapshot %s, merged %v: %s", m.SnapshotID, mergedModels, viaTables)

	// A pointer naming another tenant's bucket is refused: the snapshot is read
	// from its files, and the warning says why.
	other := strings.ReplaceAll(ptr.String(), strings.TrimSuffix(store.URL(), "/")+"/", "s3://"+bucket("globex")+"/")
	if other == ptr.String() {
		t.Fatalf("the pointer names no location under %s:\n%s", store.URL(), ptr.String())
	}
	put(lake.IcebergKey, []byte(other))
	hostile, stderr := mustAsk("hostile pointer")
	if hostile != viaFiles || !strings.Contains(stderr, "outside the lake") {
		t.Fatalf("with a pointer into another bucket: %s\n(want %s), stderr:\n%s", hostile, viaFiles, stderr)
	}

	// The tables' position deletes stand in for the merged models' changed keys:
	// without those files the snapshot still reads through its tables, and no
	// longer from its files.
	put(lake.IcebergKey, ptr.Bytes())
	for _, name := range mergedModels {
		for _, k := range m.Models[name].Changed.PartFiles() {
			if err := store.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got, _ := mustAsk("without the changed keys"); got != viaTables {
		t.Fatalf("through the tables without the changed-key files: %s, want %s", got, viaTables)
	}
	if err := store.Delete(ctx, lake.IcebergKey); err != nil {
		t.Fatal(err)
	}
	if got, stderr, err := ask("files without the changed keys"); err == nil {
		t.Fatalf("the snapshot's files read without their changed keys: %s\n%s", got, stderr)
	}

	// The tables' commits publish a snapshot: with the tables still at the first
	// run's snapshot (a run that failed after writing _manifest/batch.json and before
	// its last commit), readers stay on that snapshot, through its tables, with every
	// change since read from the speed files beside it — the marts as the first run
	// built them — and need no file the second run wrote; as if the second run had
	// not published.
	first, err := lake.DecodeIcebergPointer(firstPtr.Bytes(), strings.TrimSuffix(store.URL(), "/"))
	if err != nil {
		t.Fatal(err)
	}
	put(lake.IcebergKey, firstPtr.Bytes())
	second, err := store.List(ctx, "batch/"+m.SnapshotID+"/")
	if err != nil || len(second) == 0 {
		t.Fatalf("the second snapshot's files: %d, %v", len(second), err)
	}
	for _, o := range second {
		if !strings.HasSuffix(o.Key, "/manifest.json") {
			if err := store.Delete(ctx, o.Key); err != nil {
				t.Fatal(err)
			}
		}
	}
	behind, _ := mustAsk("tables behind")
	var firstManifest bytes.Buffer
	if err := store.Get(ctx, lake.SnapshotManifestKey(first.SnapshotID), &firstManifest); err != nil {
		t.Fatal(err)
	}
	put(lake.ManifestKey, firstManifest.Bytes())
	if err := store.Delete(ctx, lake.IcebergKey); err != nil {
		t.Fatal(err)
	}
	unpublished, _ := mustAsk("the second run unpublished")
	if behind != unpublished || behind == viaTables {
		t.Fatalf("with the tables at the first snapshot:\n%s\nwant the first snapshot's:\n%s\nnot the second's:\n%s", behind, unpublished, viaTables)
	}
}
