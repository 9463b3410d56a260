package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fhirlake/internal/testenv"
)

// TestBackfill loads Synthea bulk-export NDJSON and a gzipped transaction
// Bundle into a local lake, twice: the second load overwrites the first, so
// the lake holds each resource once.
func TestBackfill(t *testing.T) {
	small := testenv.Shared(t, "data", "synthea-small")
	bundles, _ := filepath.Glob(filepath.Join(testenv.Shared(t, "data", "synthea-medium", "bundles"), "*.json.gz"))
	if len(bundles) == 0 {
		t.Skip("no synthea-medium bundles")
	}
	dir := t.TempDir()
	lake := filepath.Join(dir, "lake", "acme")
	cfgPath := filepath.Join(dir, "fhirlake.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf("work_dir: %s\ntenants:\n  - name: acme\n    store: {type: local, path: %s}\n", filepath.Join(dir, "work"), lake)), 0o644)

	patients := filepath.Join(small, "Patient.ndjson")
	conditions := filepath.Join(small, "Condition.ndjson")
	// A gzipped copy of an NDJSON file, and one bad line.
	gz := filepath.Join(dir, "Observation.ndjson.gz")
	obs, err := os.ReadFile(filepath.Join(small, "Observation.ndjson"))
	if err != nil {
		t.Skip("no Observation.ndjson in synthea-small")
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(obs)
	zw.Close()
	os.WriteFile(gz, b.Bytes(), 0o644)

	run := func(files ...string) (string, error) {
		var out bytes.Buffer
		root := newRoot()
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append([]string{"--config", cfgPath, "backfill", "-q", "--tenant", "acme"}, files...))
		err := root.ExecuteContext(context.Background())
		return out.String(), err
	}
	for i := 0; i < 2; i++ {
		if out, err := run(patients, conditions, gz, bundles[0]); err != nil {
			t.Fatalf("backfill run %d: %v\n%s", i, err, out)
		}
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows, distinct int
	q := fmt.Sprintf("SELECT count(*), count(DISTINCT (resource_type, id)) FROM read_parquet('%s/speed/resources/*/*.parquet')", lake)
	if err := db.QueryRow(q).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	want := countLines(t, patients) + countLines(t, conditions) + strings.Count(string(obs), "\n")
	if rows < want || rows != distinct {
		t.Fatalf("raw rows: got %d rows, %d distinct resources; want at least %d and no duplicates after a second load", rows, distinct, want)
	}
	var patientRows int
	if err := db.QueryRow(fmt.Sprintf("SELECT count(*) FROM read_parquet('%s/speed/patient/*/*.parquet')", lake)).Scan(&patientRows); err != nil {
		t.Fatal(err)
	}
	if patientRows < countLines(t, patients) {
		t.Errorf("patient view: got %d rows, want at least %d", patientRows, countLines(t, patients))
	}

	bad := filepath.Join(dir, "bad.ndjson")
	os.WriteFile(bad, []byte("{\"resourceType\":\"Patient\",\"id\":\"ok\"}\n{not json\n{\"resourceType\":\"Patient\"}\n"), 0o644)
	out, err := run(bad)
	if err == nil || !strings.Contains(out, "line 2") || !strings.Contains(out, "line 3") {
		t.Fatalf("bad file: got %v\n%s\nwant an error naming lines 2 and 3", err, out)
	}
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}
