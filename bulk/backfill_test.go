package bulk

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/prometheus/client_golang/prometheus"

	"fhirlake/flatten"
	"fhirlake/sink"
)

// writeFiles writes each name's content into dir and returns the paths in
// the order given.
func writeFiles(t *testing.T, dir string, files ...[2]string) []string {
	t.Helper()
	var paths []string
	for _, f := range files {
		p := filepath.Join(dir, f[0])
		if err := os.WriteFile(p, []byte(f[1]), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// TestBackfill loads NDJSON without its suffix, a gzipped transaction with
// deletes and a notification into a local lake, twice: the second load
// writes the same objects, so the lake holds each change once.
func TestBackfill(t *testing.T) {
	dir := t.TempDir()
	paths := writeFiles(t, dir,
		[2]string{"export", patientA + "\nnot JSON\n" + `{"resourceType":"Patient"}` + "\n" + patientB + "\n"},
		[2]string{"tx.json", string(gzipped(t, transaction))},
		[2]string{"notification.json", notificationBundle},
		[2]string{"id-only.json", strings.Replace(notificationBundle, `"resource":{"resourceType":"Encounter"`, `"x":{"resourceType":"Encounter"`, 1)},
	)
	lake := filepath.Join(dir, "lake")
	store, err := sink.NewLocal(lake)
	if err != nil {
		t.Fatal(err)
	}
	w, err := sink.NewWriter(map[string]sink.Store{"acme": store}, sink.WriterOptions{WorkDir: filepath.Join(dir, "work")}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	views, err := flatten.DefaultViews()
	if err != nil {
		t.Fatal(err)
	}

	want := []BackfillResult{
		{File: paths[0], Resources: 2, Files: 2, Errors: []string{
			paths[0] + ": line 2: parse resource: offset 0: invalid literal",
			paths[0] + ": line 3: Patient without id",
		}},
		{File: paths[1], Resources: 2, Deletes: 2, Files: 3, Errors: []string{paths[1] + ": entry 5: delete names no Type/id"}},
		{File: paths[2], Resources: 1, Files: 2},
		{File: paths[3], Errors: []string{paths[3] + ": Encounter/e1: the notification names the resource without carrying it (id-only), and backfill reads no FHIR server"}},
	}
	var keys [2][]string
	for load := range 2 {
		for i, p := range paths {
			got, err := Backfill(context.Background(), w, "acme", p, BackfillOptions{Views: views})
			if err != nil {
				t.Fatalf("load %d: %v", load, err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want[i]) {
				t.Errorf("load %d of %s:\ngot  %+v\nwant %+v", load, filepath.Base(p), got, want[i])
			}
		}
		objs, err := store.List(context.Background(), "speed/")
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			keys[load] = append(keys[load], o.Key)
		}
	}
	if !slices.Equal(keys[0], keys[1]) {
		t.Errorf("the second load wrote other objects:\n%v\n%v", keys[0], keys[1])
	}

	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got := queryStrings(t, db, fmt.Sprintf(`SELECT resource_type || '/' || id || ' ' || operation || ' @' || "offset"
		FROM read_parquet('%s/speed/resources/*/*.parquet')`, lake))
	slices.Sort(got)
	wantRows := []string{
		// export: lines 1 and 4.
		"Patient/a upsert @1", "Patient/b upsert @4",
		// tx.json: 1 + the entry index.
		"Patient/t1 upsert @1", "Patient/gone delete @2", "Observation/o9 delete @3", "Observation/o1 upsert @5",
		// notification.json: its one change, not its status nor its context.
		"Encounter/e1 upsert @1",
	}
	slices.Sort(wantRows)
	if !slices.Equal(got, wantRows) {
		t.Errorf("raw rows:\ngot  %v\nwant %v", got, wantRows)
	}
}

func TestBackfillMissingFile(t *testing.T) {
	_, err := Backfill(context.Background(), nil, "acme", filepath.Join(t.TempDir(), "absent.ndjson"), BackfillOptions{})
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("got %v, want an error saying the file does not exist", err)
	}
}
