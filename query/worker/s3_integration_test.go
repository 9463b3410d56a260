//go:build integration

package worker

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fhirlake/config"
	"fhirlake/query"
	"fhirlake/query/querytest"
	"fhirlake/sink"
)

// TestIntegrationS3WorkerHoldsOnlyItsTenantsKey: acme's worker reads
// acme's bucket on the local S3 server. With every check of the session
// bypassed (a DuckDB of its own, the key offered for every URL), it still
// cannot read globex's bucket, because the only key it holds is acme's;
// and its environment holds none of globex's secrets.
func TestIntegrationS3WorkerHoldsOnlyItsTenantsKey(t *testing.T) {
	endpoint := os.Getenv("FHIRLAKE_S3_ENDPOINT")
	if endpoint == "" {
		t.Fatal(`the local stack is not configured: run "make test", or eval "$(deploy/local/stack env)" after "deploy/local/stack up"`)
	}
	ext := httpfsExtension(t)
	run := fmt.Sprintf("it-worker/%d", time.Now().UnixNano())
	stores := map[string]config.Store{}
	keys := map[string]string{}
	for _, tenant := range []string{"acme", "globex"} {
		env := "FHIRLAKE_TENANT_" + strings.ToUpper(tenant) + "_"
		st := config.Store{Type: "s3", Bucket: os.Getenv(env + "BUCKET"), Prefix: run, Endpoint: endpoint, Region: "us-east-1",
			PathStyle: true, AccessKeyEnv: env + "ACCESS_KEY", SecretKeyEnv: env + "SECRET_KEY"}
		stores[tenant] = st
		keys[tenant] = uploadSmallLake(t, tenant, st)
	}
	f := newFixture(t, Options{}, query.Options{}, func(s *Spec) {
		st := stores[s.Tenant.Name]
		s.Tenant.Store, s.Root = st, ""
		s.Session.HTTPFSExtension = ext
		s.Env = map[string]string{st.AccessKeyEnv: os.Getenv(st.AccessKeyEnv), st.SecretKeyEnv: os.Getenv(st.SecretKeyEnv)}
		s.RawSQLForTests = true
	})
	if code, body := f.query(t, "acme", "SELECT id FROM patient"); code != http.StatusOK || !strings.Contains(body, "a1") {
		t.Fatalf("acme's query on S3: got %d %q, want its patient", code, body)
	}
	read := func(tenant string) string {
		st := stores[tenant]
		return fmt.Sprintf("SELECT count(*) FROM read_parquet('s3://%s/%s/%s')", st.Bucket, run, keys[tenant])
	}
	if code, body := f.rawSQL(t, "acme", read("acme")); code != http.StatusOK || strings.TrimSpace(body) != "1" {
		t.Fatalf("acme's worker reading its own bucket past the checks: got %d %q, want 200 1", code, body)
	}
	code, body := f.rawSQL(t, "acme", read("globex"))
	if code == http.StatusOK || !strings.Contains(body, "403") {
		t.Errorf("acme's worker reading globex's bucket past the checks: got %d %q, want S3's 403", code, body)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", f.pid("acme")))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{stores["globex"].AccessKeyEnv, stores["globex"].SecretKeyEnv} {
		if v := os.Getenv(name); strings.Contains(string(environ), name) || strings.Contains(string(environ), v) {
			t.Errorf("acme's worker's environment holds globex's %s", name)
		}
	}
}

// uploadSmallLake writes a one-patient lake of tenant to its bucket with
// its own key, removed when the test ends, and returns its raw file's key.
func uploadSmallLake(t *testing.T, tenant string, st config.Store) string {
	t.Helper()
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), tenant)
	querytest.WriteRaw(t, root, tenant, "t-0-0-0", []querytest.Row{{Type: "Patient", ID: tenant[:1] + "1", Version: "1", Op: "upsert", Offset: 0}})
	store, err := sink.NewS3(ctx, sink.S3Options{Bucket: st.Bucket, Prefix: st.Prefix, Endpoint: st.Endpoint, Region: st.Region,
		PathStyle: true, AccessKey: os.Getenv(st.AccessKeyEnv), SecretKey: os.Getenv(st.SecretKeyEnv)})
	if err != nil {
		t.Fatal(err)
	}
	var uploaded []string
	raw := ""
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		key := filepath.ToSlash(rel)
		if strings.HasPrefix(key, "speed/resources/") {
			raw = key
		}
		uploaded = append(uploaded, key)
		return store.Put(ctx, key, p)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, k := range uploaded {
			_ = store.Delete(context.Background(), k)
		}
	})
	if raw == "" {
		t.Fatal("no raw file written")
	}
	return raw
}

// httpfsExtension is the pinned httpfs extension the stack installs.
func httpfsExtension(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FHIRLAKE_HTTPFS_EXTENSION"); p != "" {
		return p
	}
	m, _ := filepath.Glob(filepath.Join("..", "..", ".cache", "duckdb", "repo", "v1.5.5", "*", "httpfs.duckdb_extension"))
	if len(m) != 1 {
		t.Fatal("no httpfs extension: run deploy/local/stack install, or set FHIRLAKE_HTTPFS_EXTENSION")
	}
	abs, err := filepath.Abs(m[0])
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
