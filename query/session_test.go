package query

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fhirlake/query/querytest"
)

type row struct {
	typ, id, version, op string
	offset               int64
}

// writeLake writes rows as one speed file of tenant under root.
func writeLake(t *testing.T, root, tenant, name string, rows []row) {
	t.Helper()
	out := make([]querytest.Row, len(rows))
	for i, r := range rows {
		out[i] = querytest.Row{Type: r.typ, ID: r.id, Version: r.version, Op: r.op, Offset: r.offset}
	}
	querytest.WriteRaw(t, root, tenant, name, out)
}

func count(t *testing.T, s *Session, q string) int {
	t.Helper()
	rows, err := s.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	rows.Next()
	var n int
	if err := rows.Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestLatestVersionAndDeletes(t *testing.T) {
	root := filepath.Join(t.TempDir(), "acme")
	writeLake(t, root, "acme", "t-0-0-9", []row{
		{"Patient", "p1", "1", "upsert", 0},
		{"Patient", "p1", "2", "upsert", 1},
		{"Patient", "p2", "1", "upsert", 2},
		{"Observation", "o1", "1", "upsert", 3},
		{"Observation", "o1", "2", "delete", 4},
		{"MedicationRequest", "m1", "10", "upsert", 5},
		{"MedicationRequest", "m1", "9", "upsert", 6}, // an older version arriving late
	})
	// A replay with other boundaries leaves an overlapping file.
	writeLake(t, root, "acme", "t-0-1-2", []row{{"Patient", "p1", "2", "upsert", 1}, {"Patient", "p2", "1", "upsert", 2}})
	s, err := Open(context.Background(), "acme", root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := strings.Join(s.Types, ","), "MedicationRequest,Observation,Patient"; got != want {
		t.Errorf("types: got %s, want %s", got, want)
	}
	for q, want := range map[string]int{
		"SELECT count(*) FROM patient":                                      2,
		"SELECT count(*) FROM patient WHERE id = 'p1' AND version_id = '2'": 1,
		"SELECT count(*) FROM observation":                                  0,
		"SELECT count(*) FROM medication_request WHERE version_id = '10'":   1,
		"SELECT count(*) FROM resources_latest WHERE operation = 'delete'":  1,
		"SELECT count(*) FROM resources_all":                                9,
		"SELECT count(*) FROM patient WHERE resource->>'$.id' = id":         2,
	} {
		if got := count(t, s, q); got != want {
			t.Errorf("%s: got %d, want %d", q, got, want)
		}
	}
}

func TestEmptyLake(t *testing.T) {
	s, err := Open(context.Background(), "acme", t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := count(t, s, "SELECT count(*) FROM resources"); got != 0 {
		t.Fatalf("got %d rows, want 0", got)
	}
}

// TestSandbox: a tenant's session reads its own lake and nothing else.
func TestSandbox(t *testing.T) {
	base := t.TempDir()
	acme := filepath.Join(base, "acme")
	writeLake(t, acme, "acme", "t-0-0-0", []row{{"Patient", "a", "1", "upsert", 0}})
	writeLake(t, filepath.Join(base, "acme2"), "acme2", "t-0-0-0", []row{{"Patient", "b", "1", "upsert", 0}})
	writeLake(t, filepath.Join(base, "globex"), "globex", "t-0-0-0", []row{{"Patient", "c", "1", "upsert", 0}})
	if err := os.Symlink(filepath.Join(base, "globex"), filepath.Join(acme, "link")); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), "acme", acme, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := count(t, s, "SELECT count(*) FROM patient"); got != 1 {
		t.Fatalf("own data: got %d rows, want 1", got)
	}
	g := filepath.Join(base, "globex", "speed", "resources", "date=2026-01-01", "t-0-0-0.parquet")
	for name, q := range map[string]string{
		"absolute path":     fmt.Sprintf("SELECT * FROM read_parquet('%s')", g),
		"dot-dot":           fmt.Sprintf("SELECT * FROM read_parquet('%s/../globex/speed/resources/*/*.parquet')", acme),
		"sibling prefix":    fmt.Sprintf("SELECT * FROM read_parquet('%s2/speed/resources/*/*.parquet')", acme),
		"glob":              fmt.Sprintf("SELECT * FROM read_parquet('%s/*/speed/resources/*/*.parquet')", base),
		"symlink":           fmt.Sprintf("SELECT * FROM read_parquet('%s/link/speed/resources/*/*.parquet')", acme),
		"other file":        "SELECT * FROM read_csv('/etc/passwd')",
		"attach":            fmt.Sprintf("ATTACH '%s/x.duckdb'", base),
		"load":              "LOAD httpfs",
		"install":           "INSTALL httpfs",
		"widen directories": fmt.Sprintf("SET allowed_directories = ['%s']", base),
		"enable access":     "SET enable_external_access = true",
		"unlock":            "SET lock_configuration = false",
		"copy out":          fmt.Sprintf("COPY (SELECT 1) TO '%s/out.csv'", base),
		"s3 url":            "SELECT * FROM read_parquet('s3://fhirlake-globex/speed/resources/*/*.parquet')",
		// The driver would run every statement but the last while preparing.
		"copy then select": fmt.Sprintf("COPY (SELECT 1) TO '%s/speed/x.csv'; SELECT 1", acme),
		"drop then select": "DROP VIEW patient; SELECT 1",
		"spill directory":  "SELECT * FROM glob('.tmp/*')",
	} {
		t.Run(name, func(t *testing.T) {
			rows, err := s.Query(context.Background(), q)
			if err == nil {
				n := 0
				for rows.Next() {
					n++
				}
				err = rows.Err()
				rows.Close()
				if err == nil {
					t.Fatalf("%s: got %d rows and no error, want a refusal", q, n)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(acme, "speed", "x.csv")); err == nil {
		t.Error("a statement before a SELECT ran")
	}
	// Nothing was written into the tenant's lake.
	entries, _ := os.ReadDir(filepath.Join(acme, "speed", "resources", "date=2026-01-01"))
	if len(entries) != 1 {
		t.Errorf("tenant lake holds %d files after the refusals, want 1", len(entries))
	}
	if got := count(t, s, "SELECT count(*) FROM patient"); got != 1 {
		t.Fatalf("after refusals: got %d rows, want 1", got)
	}
}

// TestSandboxOnEveryConnection: every connection of a session's pool has
// the sandbox's settings. A tenant's statement may not read settings, so
// the package reads them itself, holding every connection at once.
func TestSandboxOnEveryConnection(t *testing.T) {
	const n = 3
	s, err := Open(context.Background(), "acme", t.TempDir(), Options{Connections: n})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range n {
		conn, err := s.db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var external, locked bool
		var dirs string
		err = conn.QueryRowContext(context.Background(), "SELECT current_setting('enable_external_access'), current_setting('lock_configuration'), current_setting('allowed_directories')::VARCHAR").
			Scan(&external, &locked, &dirs)
		if err != nil {
			t.Fatal(err)
		}
		if external || !locked || !strings.Contains(dirs, s.Root()) {
			t.Errorf("connection %d: external access %v, locked %v, allowed directories %s", i, external, locked, dirs)
		}
	}
}

func TestQueryTimeout(t *testing.T) {
	s, err := Open(context.Background(), "acme", t.TempDir(), Options{QueryTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	rows, err := s.Query(context.Background(), "SELECT count(*) FROM range(10000000000)")
	if err == nil {
		for rows.Next() {
		}
		err = rows.Err()
		rows.Close()
	}
	if !errors.Is(err, ErrQueryTimeout) && !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want ErrQueryTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s: not interrupted", d)
	}
	if got := count(t, s, "SELECT 42"); got != 42 {
		t.Fatalf("after the timeout: got %d", got)
	}
}

func TestExportParquetAndArrow(t *testing.T) {
	root := filepath.Join(t.TempDir(), "acme")
	writeLake(t, root, "acme", "t-0-0-1", []row{{"Patient", "p1", "1", "upsert", 0}, {"Patient", "p2", "1", "upsert", 1}})
	s, err := Open(context.Background(), "acme", root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var pq, ar bytes.Buffer
	res, err := s.Export(context.Background(), &pq, "SELECT id FROM patient ORDER BY id", "parquet", ExportOptions{})
	if err != nil || res.Rows != 2 || !bytes.HasPrefix(pq.Bytes(), []byte("PAR1")) {
		t.Fatalf("parquet: %+v %v (%d bytes)", res, err, pq.Len())
	}
	res, err = s.Export(context.Background(), &ar, "SELECT * FROM range(10)", "arrow", ExportOptions{MaxRows: 3})
	if err != nil || res.Rows != 3 || !res.Truncated || ar.Len() == 0 {
		t.Fatalf("arrow: %+v %v", res, err)
	}
}
