//go:build integration

package query

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fhirlake/query/querytest"
	"fhirlake/sink"
)

// s3Tenant is a tenant of the local stack (`eval "$(deploy/local/stack env)"`).
type s3Tenant struct {
	name, bucket, access, secret string
}

func stackTenant(t *testing.T, name string) s3Tenant {
	t.Helper()
	env := func(what string) string {
		return os.Getenv("FHIRLAKE_TENANT_" + strings.ToUpper(name) + "_" + what)
	}
	tn := s3Tenant{name: name, bucket: env("BUCKET"), access: env("ACCESS_KEY"), secret: env("SECRET_KEY")}
	if tn.bucket == "" || os.Getenv("FHIRLAKE_S3_ENDPOINT") == "" {
		t.Fatal(`the local stack is not configured: run "make test", or eval "$(deploy/local/stack env)" after "deploy/local/stack up"`)
	}
	return tn
}

func (tn s3Tenant) access3(prefix string) S3Access {
	return S3Access{Bucket: tn.bucket, Prefix: prefix, Endpoint: os.Getenv("FHIRLAKE_S3_ENDPOINT"), Region: "us-east-1",
		PathStyle: true, AccessKey: tn.access, SecretKey: tn.secret}
}

// uploadLake copies the local lake root to the tenant's bucket under
// prefix with the tenant's own key, and removes it when the test ends.
func uploadLake(t *testing.T, tn s3Tenant, prefix, root string) sink.Store {
	t.Helper()
	ctx := context.Background()
	a := tn.access3(prefix)
	store, err := sink.NewS3(ctx, sink.S3Options{Bucket: a.Bucket, Prefix: prefix, Endpoint: a.Endpoint, Region: a.Region,
		PathStyle: true, AccessKey: a.AccessKey, SecretKey: a.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		keys = append(keys, filepath.ToSlash(rel))
		return store.Put(ctx, filepath.ToSlash(rel), p)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, k := range keys {
			_ = store.Delete(context.Background(), k)
		}
	})
	return store
}

// rowsOf renders every row of q, in order, as text.
func rowsOf(t *testing.T, ctx context.Context, s *Session, q string) []string {
	t.Helper()
	var out []string
	err := s.Run(ctx, q, func(rows *sql.Rows) error {
		cols, err := rows.Columns()
		if err != nil {
			return err
		}
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				return err
			}
			out = append(out, fmt.Sprint(vals...))
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

// TestIntegrationS3Session: acme's session reads acme's bucket directly
// (httpfs, acme's key) and returns what the same lake in a local directory
// returns; it cannot read globex's bucket even with the statement check
// bypassed: allowed_directories refuses the URL, and where a URL slips past
// it (s3://acme/../globex/…), S3 refuses acme's key.
func TestIntegrationS3Session(t *testing.T) {
	ext := httpfsExtension(t)
	acme, globex := stackTenant(t, "acme"), stackTenant(t, "globex")
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "acme")
	querytest.WriteChanges(t, root, "acme", []querytest.Change{
		{Type: "Patient", ID: "p1", Version: "1", Offset: 0, Fields: `"gender":"female","birthDate":"1980-01-02"`},
		{Type: "Patient", ID: "p2", Version: "1", Offset: 1, Fields: `"gender":"male"`},
		{Type: "Observation", ID: "o1", Version: "1", Offset: 2, Fields: `"status":"final","subject":{"reference":"Patient/p1"}`},
	})
	querytest.WriteChanges(t, root, "acme", []querytest.Change{
		{Type: "Patient", ID: "p1", Version: "2", Offset: 3, Fields: `"gender":"female","birthDate":"1980-01-03"`},
		{Type: "Patient", ID: "p2", Version: "2", Delete: true, Offset: 4},
	})
	run := fmt.Sprintf("it-query/%d", time.Now().UnixNano())
	acmeStore := uploadLake(t, acme, run, root)
	globexStore := uploadLake(t, globex, run, root)

	local, err := Open(ctx, "acme", root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	s, err := OpenS3(ctx, "acme", acmeStore, acme.access3(run), Options{HTTPFSExtension: ext})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := s.Root(), "s3://"+acme.bucket+"/"+run; got != want {
		t.Errorf("got root %s, want %s", got, want)
	}
	if got, want := s.Catalog().Tables, local.Catalog().Tables; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got tables %v, want %v", got, want)
	}
	for _, q := range []string{
		"SELECT * FROM resources ORDER BY ALL",
		"SELECT * FROM patient ORDER BY id",
		"SELECT * FROM observation ORDER BY id",
		"SELECT resource_type, count(*) FROM resources_all GROUP BY ALL ORDER BY ALL",
	} {
		got, want := rowsOf(t, ctx, s, q), rowsOf(t, ctx, local, q)
		if len(want) == 0 || strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: got\n%s\nwant\n%s", q, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}

	// globex's lake is there, readable with globex's key.
	gs, err := OpenS3(ctx, "globex", globexStore, globex.access3(run), Options{HTTPFSExtension: ext})
	if err != nil {
		t.Fatal(err)
	}
	defer gs.Close()
	if got := rowsOf(t, ctx, gs, "SELECT count(*) FROM patient"); len(got) != 1 || got[0] != "1" {
		t.Fatalf("globex's own session: got %v patients, want 1", got)
	}
	objs, err := globexStore.List(ctx, "speed/resources/")
	if err != nil || len(objs) == 0 {
		t.Fatalf("globex's speed files: %v, %v", objs, err)
	}
	key := objs[0].Key
	// The session holds one secret: acme's key, offered for acme's lake
	// only, and that key opens nothing of globex's bucket.
	var secrets int
	var scope, keyID string
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) OVER (), scope::VARCHAR, secret_string FROM duckdb_secrets()").Scan(&secrets, &scope, &keyID); err != nil {
		t.Fatal(err)
	}
	if want := "s3://" + acme.bucket + "/" + run + "/"; secrets != 1 || !strings.Contains(scope, want) || !strings.Contains(keyID, "key_id="+acme.access) || strings.Contains(keyID, acme.secret) {
		t.Errorf("got %d secrets, scope %s, %s; want acme's key id alone, scoped to %s, its secret redacted", secrets, scope, keyID, want)
	}
	crossed := globex.access3(run)
	crossed.AccessKey, crossed.SecretKey = acme.access, acme.secret
	cs, err := sink.NewS3(ctx, sink.S3Options{Bucket: crossed.Bucket, Prefix: run, Endpoint: crossed.Endpoint, Region: crossed.Region,
		PathStyle: true, AccessKey: crossed.AccessKey, SecretKey: crossed.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.List(ctx, "speed/"); !errors.Is(err, sink.ErrAccessDenied) {
		t.Fatalf("acme's key listing globex's bucket: got %v, want access denied", err)
	}
	// Straight to DuckDB, past the statement check (s.db is the hook).
	for _, tc := range []struct{ url, want string }{
		{"s3://" + globex.bucket + "/" + run + "/" + key, "Permission Error"},
		// Passes allowed_directories; S3 refuses acme's key.
		{"s3://" + acme.bucket + "/" + run + "/../../" + globex.bucket + "/" + run + "/" + key, "HTTP 403"},
	} {
		t.Run(strings.ReplaceAll(tc.url, run, "<run>"), func(t *testing.T) {
			var n int
			err := s.db.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) FROM read_parquet('%s')", tc.url)).Scan(&n)
			if err == nil {
				t.Fatalf("acme's session read %d rows of globex's bucket", n)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %s", err, tc.want)
			}
		})
	}
}
