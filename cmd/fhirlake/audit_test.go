package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"fhirlake/audit"
	"fhirlake/query/querytest"
)

// auditLake writes a one-tenant local lake of two patients and a
// configuration whose audit trail goes to a file; it returns the
// configuration's path and the trail's.
func auditLake(t *testing.T, extra string) (conf, trail string) {
	t.Helper()
	dir := t.TempDir()
	lake := filepath.Join(dir, "lake", "acme")
	querytest.WriteRaw(t, lake, "acme", "t-0-0-0", []querytest.Row{
		{Type: "Patient", ID: "p1", Version: "1", Op: "upsert", Offset: 0},
		{Type: "Patient", ID: "p2", Version: "1", Op: "upsert", Offset: 1},
	})
	trail = filepath.Join(dir, "audit", "audit.log")
	c := fmt.Sprintf("work_dir: %s\naudit: {path: %s}\n%stenants:\n  - {name: acme, store: {type: local, path: %s}}\n",
		filepath.Join(dir, "work"), trail, extra, lake)
	conf = filepath.Join(dir, "fhirlake.yaml")
	if err := os.WriteFile(conf, []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf, trail
}

func readTrail(t *testing.T, path string) []audit.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []audit.Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line: %v: %s", err, sc.Text())
		}
		recs = append(recs, r)
	}
	return recs
}

// TestQueryWritesAnAuditRecord: each `fhirlake query` leaves one line,
// answered or refused, though the process confines itself before it runs
// the statement.
func TestQueryWritesAnAuditRecord(t *testing.T) {
	conf, trail := auditLake(t, "")
	const q = "SELECT id FROM patient ORDER BY id"
	out, err := runCommand("--config", conf, "query", "--tenant", "acme", "--format", "csv", q)
	if err != nil || out != "id\np1\np2\n" {
		t.Fatalf("query: got %q, %v", out, err)
	}
	if _, err := runCommand("--config", conf, "query", "--tenant", "acme", "DROP TABLE patient"); err == nil {
		t.Fatal("a refused statement exited 0")
	}
	recs := readTrail(t, trail)
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2: %+v", len(recs), recs)
	}
	r := recs[0]
	if r.Kind != "query" || r.Source != "cli" || r.Tenant != "acme" || r.Key != actor() || r.SQL != q ||
		r.Rows != 2 || r.Bytes != int64(len(out)) || r.Status != "ok" {
		t.Errorf("answered query: got %+v", r)
	}
	if r := recs[1]; r.SQL != "DROP TABLE patient" || r.Status != "statement_refused" || r.Rows != 0 {
		t.Errorf("refused query: got %+v", r)
	}
}

// TestCompactWritesAnAuditRecord: a compaction leaves one line per tenant,
// with the snapshot it published. It runs dbt: FHIRLAKE_DBT names it.
func TestCompactWritesAnAuditRecord(t *testing.T) {
	dbt := os.Getenv("FHIRLAKE_DBT")
	if dbt == "" || testing.Short() {
		t.Skip("FHIRLAKE_DBT is not set: compaction runs with the local stack's dbt virtualenv")
	}
	conf, trail := auditLake(t, fmt.Sprintf("compact: {dbt: %s, consistency_delay: 1ns, relationship_severity: warn}\n", dbt))
	root := newRoot()
	root.SetArgs([]string{"--config", conf, "compact", "--log-level", "error"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("compact: %v", err)
	}
	recs := readTrail(t, trail)
	if len(recs) != 1 {
		t.Fatalf("got %d records, want 1: %+v", len(recs), recs)
	}
	if r := recs[0]; r.Kind != "compaction" || r.Source != "compact" || r.Tenant != "acme" || r.Status != "published" ||
		r.Snapshot == "" || r.Rows != 2 || r.Key != actor() {
		t.Errorf("got %+v, want acme's published snapshot of 2 resources", r)
	}
}
