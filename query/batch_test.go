package query

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/duckdb/duckdb-go/v2"

	dbtproject "fhirlake/dbt"
	"fhirlake/lake"
	"fhirlake/query/querytest"
)

// TestBatchRenamesMatchDBT: every column a staging model renames is mapped
// back, so a view keeps its columns across a compaction.
func TestBatchRenamesMatchDBT(t *testing.T) {
	rename := regexp.MustCompile(`(?m)^\s+"?([a-z_]+)"? as ([a-z_]+),?\s*$`)
	files, err := fs.Glob(dbtproject.Project, "models/staging/stg_fhir__*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no staging models: %v", err)
	}
	for _, f := range files {
		view := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "stg_fhir__"), ".sql")
		if view == "resources" {
			continue
		}
		b, _ := fs.ReadFile(dbtproject.Project, f)
		got := map[string]string{}
		for _, m := range rename.FindAllStringSubmatch(string(b), -1) {
			if _, lineage := batchLineage[m[2]]; lineage || m[1] == m[2] {
				continue
			}
			got[m[2]] = m[1]
		}
		for batch, speed := range got {
			if s := speedColumn(view, batch); s != speed {
				t.Errorf("%s: staging column %s comes from %s, mapped back to %q", view, batch, speed, s)
			}
		}
		for batch := range batchRenames[view] {
			if _, ok := got[batch]; !ok {
				t.Errorf("%s: batchRenames maps %s, which the staging model no longer has", view, batch)
			}
		}
	}
}

// snapshot publishes a batch snapshot of the lake at root as the compactor
// would: int_resources__latest and int_patient__latest from every speed
// file, files dated before the watermark.
func snapshot(t *testing.T, root string, watermark time.Time) {
	publishSnapshot(t, root, "20260101T000000Z-test01", watermark, 1)
}

// publishSnapshot is snapshot with a chosen id, each state model written
// as parts files, the patient state model without the columns omit (as
// the dbt staging models leave some out).
func publishSnapshot(t testing.TB, root, id string, watermark time.Time, parts int, omit ...string) {
	t.Helper()
	dir := filepath.Join(root, "batch", id)
	for _, m := range []string{"int_resources__latest", "int_patient__latest", "patients"} {
		if err := os.MkdirAll(filepath.Join(dir, m), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	raw := fmt.Sprintf("read_parquet('%s/speed/resources/*/*.parquet')", root)
	pat := fmt.Sprintf("read_parquet('%s/speed/patient/*/*.parquet')", root)
	latest := `SELECT tenant, resource_type, id AS resource_id, version_id, TRY_CAST(version_id AS BIGINT) AS version_number, last_updated, operation,
		topic AS kafka_topic, "partition" AS kafka_partition, "offset" AS kafka_offset, ingest_time, resource, operation = 'delete' AS is_deleted
		FROM (` + lake.LatestSQL(raw, "") + `)`
	omitted := ""
	for _, c := range omit {
		omitted += ", " + c
	}
	files := map[string][]string{}
	for i := range parts {
		part := func(model, q string) string {
			key := fmt.Sprintf("batch/%s/%s/data_%d.parquet", id, model, i)
			files[model] = append(files[model], key)
			return fmt.Sprintf("COPY (SELECT * FROM (%s) WHERE hash(resource_id) %% %d = %d) TO '%s/%s'", q, parts, i, root, key)
		}
		for _, q := range []string{
			part("int_resources__latest", latest),
			part("int_patient__latest", fmt.Sprintf(`SELECT p.* EXCLUDE (_tenant, _resource_type, _resource_id, _version_id, _last_updated, _topic, _partition, _offset, _ingest_time, _row, date%s),
			p._tenant AS tenant, p._resource_type AS resource_type, p._resource_id AS resource_id, p._version_id AS version_id,
			TRY_CAST(p._version_id AS BIGINT) AS version_number, p._last_updated AS last_updated, p._topic AS kafka_topic,
			p._partition AS kafka_partition, p._offset AS kafka_offset, p._ingest_time AS ingest_time, p._row AS row_index
			FROM %s p SEMI JOIN (%s) l ON l.resource_id = p._resource_id AND l.kafka_offset = p._offset AND NOT l.is_deleted
			QUALIFY row_number() OVER (PARTITION BY p._resource_id, p._row ORDER BY p._ingest_time DESC) = 1`, omitted, pat, latest)),
		} {
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("%v\n%s", err, q)
			}
		}
	}
	files["patients"] = []string{"batch/" + id + "/patients/data_0.parquet"}
	if _, err := db.Exec(fmt.Sprintf("COPY (SELECT 'mart' AS kind, count(*) AS n FROM %s) TO '%s/patients/data_0.parquet'", pat, dir)); err != nil {
		t.Fatal(err)
	}
	old := watermark.Add(-2 * time.Hour)
	if err := filepath.WalkDir(filepath.Join(root, "speed"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return os.Chtimes(p, old, old)
	}); err != nil {
		t.Fatal(err)
	}
	models := map[string]any{}
	for m, keys := range files {
		models[m] = map[string]any{"files": keys}
	}
	man := map[string]any{
		"version": 1, "tenant": "acme", "snapshot_id": id, "created": watermark,
		"watermark": map[string]any{"modified": watermark, "key": "speed/resources/x.parquet"},
		"models":    models,
	}
	b, _ := json.Marshal(man)
	if err := os.MkdirAll(filepath.Join(root, "_manifest"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "_manifest", "batch.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotPlusSpeed: with a batch snapshot, every view equals what the
// speed layer alone yields over the same changes — updates, deletes, late
// older versions and replays after the watermark included — while reading
// only the files newer than the watermark.
func TestSnapshotPlusSpeed(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	batched := filepath.Join(base, "batched", "acme")
	speedOnly := filepath.Join(base, "speed", "acme")
	// Before the snapshot: 150 events; after it: 60 more (updates and
	// deletes of earlier resources among them).
	for _, root := range []string{batched, speedOnly} {
		if _, err := querytest.SynthLake(ctx, root, "acme", querytest.SynthOptions{Patients: 12, Seed: 3, FlushRows: 400, Take: 150}); err != nil {
			t.Fatal(err)
		}
	}
	watermark := time.Now().Add(-time.Hour).UTC()
	snapshot(t, batched, watermark)
	for _, root := range []string{batched, speedOnly} {
		if _, err := querytest.SynthLake(ctx, root, "acme", querytest.SynthOptions{Patients: 12, Seed: 3, FlushRows: 400, Skip: 150}); err != nil {
			t.Fatal(err)
		}
	}
	// A replay of the last range before the watermark, with other
	// boundaries, written after it.
	for _, root := range []string{batched, speedOnly} {
		if _, err := querytest.SynthLake(ctx, root, "acme", querytest.SynthOptions{Patients: 12, Seed: 3, FlushRows: 400, Skip: 140, Take: 20, Ingest: time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := Open(ctx, "acme", batched, Options{SpeedOverlap: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, err := Open(ctx, "acme", speedOnly, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cat := b.Catalog()
	if cat.Snapshot == nil || cat.SpeedFiles == 0 {
		t.Fatalf("catalog: snapshot %v, %d speed files", cat.Snapshot, cat.SpeedFiles)
	}
	if all := s.Catalog().SpeedFiles; cat.SpeedFiles >= all {
		t.Errorf("with a snapshot %d speed files are read, without %d: want fewer", cat.SpeedFiles, all)
	}
	for _, q := range []string{
		"SELECT resource_type, id, version_id, operation FROM resources_latest ORDER BY ALL",
		"SELECT resource_type, id, version_id FROM resources ORDER BY ALL",
		"SELECT * EXCLUDE (_ingest_time) FROM patient ORDER BY ALL",
		"SELECT _resource_id, _version_id, _row, code, value_quantity FROM observation ORDER BY ALL",
		"SELECT _resource_id, _version_id FROM encounter ORDER BY ALL",
	} {
		got, want := dump(t, b, q), dump(t, s, q)
		if got != want {
			t.Errorf("%s:\nwith the snapshot:\n%s\nspeed only:\n%s", q, head(got), head(want))
		}
		if want == "" {
			t.Errorf("%s: no rows; the test proves nothing", q)
		}
	}
	// The snapshot's marts are views too.
	if got := dump(t, b, "SELECT kind FROM patients"); got != "mart\n" {
		t.Errorf("mart: got %q", got)
	}
	// Patient rows carry the speed layer's columns, lineage included.
	if got := dump(t, b, "SELECT count(*) FROM (DESCRIBE patient) WHERE column_name IN ('_resource_id', '_version_id', '_offset', 'gender')"); got != "4\n" {
		t.Errorf("patient columns: got %s, want the 4 asked", got)
	}
}

// lakeTables counts the tables of schema lake, through the package's own
// queries: a caller's statement may not read DuckDB's catalog.
func lakeTables(t *testing.T, s *Session) int {
	t.Helper()
	var n int
	err := s.internalQuery(context.Background(), "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'lake'",
		func(rows *sql.Rows) error { return rows.Scan(&n) })
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func dump(t *testing.T, s *Session, q string) string {
	t.Helper()
	var out strings.Builder
	if _, err := s.Export(context.Background(), &out, q, "csv", ExportOptions{}); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")[1:]
	sort.Strings(lines)
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

func head(s string) string {
	lines := strings.SplitN(s, "\n", 12)
	if len(lines) > 11 {
		lines = append(lines[:11], "…")
	}
	return strings.Join(lines, "\n")
}
