package query

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// httpfsExtension is the httpfs extension file for this DuckDB, from
// $FHIRLAKE_HTTPFS_EXTENSION (`eval "$(deploy/local/stack env)"`) or the
// copy `deploy/local/stack install` keeps under the checkout's .cache/duckdb.
// The test is skipped without it.
func httpfsExtension(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FHIRLAKE_HTTPFS_EXTENSION"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for ; dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
		m, _ := filepath.Glob(filepath.Join(dir, ".cache", "duckdb", "repo", "v1.5.5", "*", "httpfs.duckdb_extension"))
		if len(m) == 1 {
			return m[0]
		}
	}
	t.Skip("no httpfs extension: set FHIRLAKE_HTTPFS_EXTENSION or run `deploy/local/stack install` (it copies the pinned duckdb-extension-httpfs wheel's file to .cache/duckdb)")
	return ""
}

func TestHTTPFSExtensionLoadsByPath(t *testing.T) {
	ext := httpfsExtension(t)
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "acme")
	writeLake(t, root, "acme", "t-0-0-0", []row{{"Patient", "p1", "1", "upsert", 0}})
	// open, not Open: a local lake does not load it.
	s, err := open(ctx, "acme", dirSource{root: root}, Options{HTTPFSExtension: ext}, nil)
	if err != nil {
		t.Fatalf("open with %s: %v", ext, err)
	}
	defer s.Close()
	// httpfs brings the s3_* settings (duckdb_extensions() would look
	// into the extension directory, which the sandbox forbids).
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM duckdb_settings() WHERE name = 's3_region'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatal("httpfs is not loaded: no s3_region setting")
	}
	var unsigned bool
	if err := s.db.QueryRowContext(ctx, "SELECT current_setting('allow_unsigned_extensions')").Scan(&unsigned); err != nil {
		t.Fatal(err)
	}
	if unsigned {
		t.Fatal("allow_unsigned_extensions is on")
	}
	if got := count(t, s, "SELECT count(*) FROM patient"); got != 1 {
		t.Errorf("got %d patients, want 1", got)
	}
}

func TestHTTPFSExtensionTamperedIsRefused(t *testing.T) {
	ext := httpfsExtension(t)
	b, err := os.ReadFile(ext)
	if err != nil {
		t.Fatal(err)
	}
	// A byte of the code, not of the metadata footer: only the signature can
	// tell.
	b[len(b)/2] ^= 0x01
	tampered := filepath.Join(t.TempDir(), "httpfs.duckdb_extension")
	if err := os.WriteFile(tampered, b, 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "acme")
	writeLake(t, root, "acme", "t-0-0-0", []row{{"Patient", "p1", "1", "upsert", 0}})
	s, err := open(context.Background(), "acme", dirSource{root: root}, Options{HTTPFSExtension: tampered}, nil)
	if err == nil {
		s.Close()
		t.Fatal("a tampered httpfs extension loaded")
	}
	if !strings.Contains(err.Error(), "signature") {
		t.Errorf("got %v, want a signature error", err)
	}
}
