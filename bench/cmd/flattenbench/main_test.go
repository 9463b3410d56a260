package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRun runs every measurement once on a tiny Bundle.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	bundle := `{"resourceType": "Bundle", "type": "transaction", "entry": [
		{"resource": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-02",
			"name": [{"family": "Doe", "given": ["Jane"]}], "address": [{"city": "Boston"}]}},
		{"resource": {"resourceType": "Observation", "id": "o1", "status": "final",
			"code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
			"subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 72, "unit": "/min"}}}
	]}`
	if err := os.WriteFile(filepath.Join(dir, "b.json"), []byte(bundle), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-data", dir, "-time", "1ns"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"2 resources", "patient (23 cols) flatten", "patient14 (14 cols), compact gofhir",
		"all default views + Parquet", "flatten / gofhir", "the engines agree on 14 of 14 cells",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
