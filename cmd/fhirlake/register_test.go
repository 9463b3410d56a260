package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fhirlake/catalog"
	"fhirlake/lake"
)

// TestRegisterOnce: a backfilled local lake registered twice into a SQLite catalog;
// its tables hold every change once, read back through the catalog.
func TestRegisterOnce(t *testing.T) {
	dir := t.TempDir()
	lakeDir := filepath.Join(dir, "lake", "acme")
	db := filepath.Join(dir, "catalog.db")
	cfgPath := filepath.Join(dir, "fhirlake.yaml")
	cfg := fmt.Sprintf("work_dir: %s\ntenants:\n  - name: acme\n    store: {type: local, path: %s}\niceberg:\n  catalog: sql\n  uri: %s\n",
		filepath.Join(dir, "work"), lakeDir, db)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var nd strings.Builder
	for i := 1; i <= 5; i++ {
		fmt.Fprintf(&nd, `{"resourceType":"Patient","id":"p%d","meta":{"versionId":"1","lastUpdated":"2026-01-0%dT00:00:00Z"},"gender":"female"}`+"\n", i, i)
	}
	input := filepath.Join(dir, "Patient.ndjson")
	if err := os.WriteFile(input, []byte(nd.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		root := newRoot()
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append([]string{"--config", cfgPath}, args...))
		if err := root.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	run("backfill", "-q", "--tenant", "acme", input)
	if out := run("register", "--once"); !strings.Contains(out, "acme.resources: 1 files (+1 -0)") || !strings.Contains(out, "acme.patient: 1 files (+1 -0)") {
		t.Fatalf("first pass:\n%s", out)
	}
	if out := run("register", "--once"); !strings.Contains(out, "acme.resources: 1 files (+0 -0)") {
		t.Fatalf("second pass registered again:\n%s", out)
	}

	ctx := context.Background()
	c, err := catalog.Open(ctx, catalog.Options{Type: catalog.TypeSQL, URI: db, Tenant: "acme", Warehouse: filepath.Join(lakeDir, "_iceberg")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for table, want := range map[string]int64{lake.RawDataset: 5, "patient": 5} {
		tbl, err := c.Table(ctx, table, lake.RawSchema)
		if err != nil {
			t.Fatal(err)
		}
		at, err := tbl.Scan().ToArrowTable(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if at.NumRows() != want {
			t.Errorf("table acme.%s: %d rows, want %d", table, at.NumRows(), want)
		}
		at.Release()
	}
}

func TestRegisterNeedsACatalog(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "fhirlake.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf("work_dir: %s\ntenants:\n  - name: acme\n    store: {type: local, path: %s}\n", dir, dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--config", cfgPath, "register", "--once"})
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no catalog configured") {
		t.Fatalf("register without a catalog: %v", err)
	}
}
