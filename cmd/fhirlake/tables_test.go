package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTableNamesClashRefused: custom views whose change tables would be a mart's
// table (patients) or another dataset's state table (patient_latest) are refused by
// `config validate`, `register` and `compact` before anything is written, each
// clash named with what to rename; without a catalog the same views are fine.
func TestTableNamesClashRefused(t *testing.T) {
	dir := t.TempDir()
	views := filepath.Join(dir, "views")
	if err := os.MkdirAll(views, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"patients", "patient_latest", "vitals"} {
		view := fmt.Sprintf(`{"resourceType":"ViewDefinition","name":%q,"status":"active","resource":"Patient",
			"select":[{"column":[{"name":"id","path":"getResourceKey()","type":"id"}]}]}`, name)
		if err := os.WriteFile(filepath.Join(views, name+".json"), []byte(view), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lakeDir := filepath.Join(dir, "lake", "acme")
	base := fmt.Sprintf("work_dir: %s\nviews_dir: %s\ntenants:\n  - name: acme\n    store: {type: local, path: %s}\n",
		filepath.Join(dir, "work"), views, lakeDir)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := write("plain.yaml", base)
	if out, err := runRoot(t, "config", "validate", plain); err != nil {
		t.Fatalf("without a catalog the views are fine: %v\n%s", err, out)
	}
	withCatalog := write("iceberg.yaml", base+fmt.Sprintf("iceberg:\n  catalog: sql\n  uri: %s\n", filepath.Join(dir, "catalog.db")))
	for _, args := range [][]string{
		{"config", "validate", withCatalog},
		{"--config", withCatalog, "register", "--once"},
		{"--config", withCatalog, "compact", "--tenant", "acme"},
	} {
		_, err := runRoot(t, args...)
		if err == nil {
			t.Fatalf("%v: accepted views whose tables clash", args)
		}
		for _, want := range []string{
			"iceberg table patients would be both the change table of dataset patients and the table of mart patients: rename the view patients (views_dir)",
			"iceberg table patient_latest would be both the change table of dataset patient_latest and the state table of dataset patient: rename the view patient_latest (views_dir)",
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%v: error lacks %q:\n%v", args, want, err)
			}
		}
		if strings.Contains(err.Error(), "vitals") {
			t.Errorf("%v: the view vitals clashes with nothing:\n%v", args, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "catalog.db")); err == nil {
		t.Error("a refused configuration created the catalog")
	}
	if _, err := os.Stat(lakeDir); err == nil {
		t.Error("a refused configuration wrote to the lake")
	}
}
