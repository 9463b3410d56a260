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

	"fhirlake/flatten"
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
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf("work_dir: %s\ntenants:\n  - name: acme\n    store: {type: local, path: %s}\n", filepath.Join(dir, "work"), lake)), 0o644); err != nil {
		t.Fatal(err)
	}

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
	if _, err := zw.Write(obs); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	if err := os.WriteFile(gz, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

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
	if err := os.WriteFile(bad, []byte("{\"resourceType\":\"Patient\",\"id\":\"ok\"}\n{not json\n{\"resourceType\":\"Patient\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
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

// TestBackfillAndViewsRunReadAlike gives the same files to backfill and to
// views run: the rows of every view must be of the same resources, and a
// bad line must be reported by both at the same place.
func TestBackfillAndViewsRunReadAlike(t *testing.T) {
	const (
		patientA    = `{"resourceType":"Patient","id":"a","gender":"female"}`
		patientB    = `{"resourceType":"Patient","id":"b","birthDate":"1970-01-02"}`
		encounter   = `{"resourceType":"Encounter","id":"e1","meta":{"versionId":"1"},"status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/a"}}`
		observation = `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/b"}}`
	)
	entry := func(res string) string { return `{"resource":` + res + `,"request":{"method":"PUT","url":"x"}}` }
	gz := func(s string) string {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		if _, err := zw.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
		zw.Close()
		return b.String()
	}
	cases := []struct {
		name, file, content string
		// resources and deletes are the changes backfill stores: a
		// notification's status is not one.
		resources, deletes int
		badLine            int
		// shared names a file of the shared test data to read instead of
		// content; resources is then not checked.
		shared []string
	}{
		{name: "NDJSON without the .ndjson suffix", file: "export", resources: 4,
			content: patientA + "\n" + encounter + "\n" + observation + "\n" + patientB + "\n"},
		{name: "gzipped Bundle without .gz", file: "bundle.json", resources: 2,
			content: gz("{\n  \"resourceType\": \"Bundle\",\n  \"type\": \"transaction\",\n  \"entry\": [" + entry(patientA) + ",\n" + entry(encounter) + "]\n}\n")},
		{name: "transaction with DELETE entries", file: "tx.json", resources: 2, deletes: 2,
			content: `{"resourceType":"Bundle","type":"transaction","entry":[` + entry(patientB) + `,{"request":{"method":"DELETE","url":"Patient/gone"}},` +
				entry(observation) + `,{"fullUrl":"http://example.org/fhir/Encounter/e9","request":{"method":"DELETE","url":"Encounter?status=x"}}]}`},
		{name: "notification Bundle", file: "notification.json", resources: 1,
			content: `{"resourceType":"Bundle","type":"subscription-notification","entry":[{"fullUrl":"urn:uuid:9e41ff6d-5be6-4e6a-8b85-abd4e7f58400","resource":{"resourceType":"SubscriptionStatus","id":"9e41ff6d-5be6-4e6a-8b85-abd4e7f58400","status":"active","type":"event-notification","eventsSinceSubscriptionStart":"1","notificationEvent":[{"eventNumber":"1","focus":{"reference":"http://example.org/fhir/Encounter/e1"}}],"subscription":{"reference":"http://example.org/fhir/Subscription/s1"},"topic":"http://example.org/topics/encounter"}},` +
				`{"fullUrl":"http://example.org/fhir/Encounter/e1","resource":` + encounter + `,"request":{"method":"PUT","url":"Encounter/e1"},"response":{"status":"200"}}]}`},
		{name: "a bad line among good ones", file: "bad.ndjson", resources: 2, badLine: 2,
			content: patientA + "\n{not json\n" + patientB + "\n"},
		{name: "a Synthea transaction Bundle", file: "synthea.json.gz", resources: -1,
			shared: []string{"data", "synthea-medium", "bundles", "Alica_Powlowski_f26f7274-a5d0-404b-b76d-2547fba51a3b.json.gz"}},
	}
	views, err := flatten.DefaultViews()
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, tc.file)
			if tc.shared != nil {
				data, err := os.ReadFile(testenv.Shared(t, tc.shared...))
				if err != nil {
					t.Fatal(err)
				}
				tc.content = string(data)
			}
			if err := os.WriteFile(file, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			lake := filepath.Join(dir, "lake")
			cfg := filepath.Join(dir, "fhirlake.yaml")
			if err := os.WriteFile(cfg, []byte(fmt.Sprintf("work_dir: %s\ntenants:\n  - name: acme\n    store: {type: local, path: %s}\n", filepath.Join(dir, "work"), lake)), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "flat")

			_, backfillOut, backfillErr := runCLI(t, "--config", cfg, "backfill", "-q", "--tenant", "acme", file)
			_, viewsOut, viewsErr := runCLI(t, "views", "run", "-q", "--all", "--out", out, file)
			if tc.badLine == 0 && (backfillErr != nil || viewsErr != nil) {
				t.Fatalf("backfill: %v\n%s\nviews run: %v\n%s", backfillErr, backfillOut, viewsErr, viewsOut)
			}
			if tc.badLine > 0 {
				if backfillErr == nil || !strings.Contains(backfillOut, fmt.Sprintf("%s: line %d: ", file, tc.badLine)) {
					t.Errorf("backfill: got %v\n%s\nwant an error at line %d", backfillErr, backfillOut, tc.badLine)
				}
				if viewsErr == nil || !strings.Contains(viewsOut, fmt.Sprintf("%s:%d: ", file, tc.badLine)) {
					t.Errorf("views run: got %v\n%s\nwant an error at line %d", viewsErr, viewsOut, tc.badLine)
				}
			}
			if want := fmt.Sprintf(": %d resources, %d deletes,", tc.resources, tc.deletes); tc.resources >= 0 && !strings.Contains(backfillOut, want) {
				t.Errorf("backfill: got %q, want it to report %q", backfillOut, want)
			}
			seen := 0
			for _, v := range views {
				flat := viewIDs(t, db, filepath.Join(out, v.Name(), "*.parquet"))
				loaded := viewIDs(t, db, filepath.Join(lake, "speed", v.Name(), "*", "*.parquet"))
				if strings.Join(flat, ",") != strings.Join(loaded, ",") {
					t.Errorf("%s: views run has %v, backfill %v", v.Name(), flat, loaded)
				}
				seen += len(flat)
			}
			if seen == 0 {
				t.Error("no view has any row: the comparison proves nothing")
			}
		})
	}
}

// viewIDs returns the distinct ids in the Parquet files matching glob,
// sorted; none when no file matches.
func viewIDs(t *testing.T, db *sql.DB, glob string) []string {
	t.Helper()
	if files, _ := filepath.Glob(glob); len(files) == 0 {
		return nil
	}
	rows, err := db.Query(fmt.Sprintf("SELECT DISTINCT id FROM read_parquet('%s') ORDER BY 1", glob))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}
