package compactor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	dbtproject "fhirlake/dbt"
)

// fakeDBT writes an executable that records its arguments and environment, then does
// what script says (shell).
func fakeDBT(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dbt")
	body := "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$FHIRLAKE_DBT_DATABASE.args\"\nenv > \"$FHIRLAKE_DBT_DATABASE.env\"\n" + script + "\n"
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

const writeResults = `target=$(awk 'prev=="--target-path"{print} {prev=$0}' "$FHIRLAKE_DBT_DATABASE.args")
mkdir -p "$target"
cat > "$target/run_results.json" <<'JSON'
{"metadata": {"dbt_version": "1.12.0"}, "elapsed_time": 1, "results": [{"unique_id": "model.fhirlake.patients", "status": "success"}]}
JSON`

// askCredentials is a fake dbt's request for credentials, as the plugin makes it
// (dbt/plugins/fhirlake_s3.py): its answer goes to <database>.creds.
const askCredentials = `answers=${FHIRLAKE_DBT_CREDENTIALS_FDS%,*}; requests=${FHIRLAKE_DBT_CREDENTIALS_FDS#*,}
echo s3 >&"$requests"; read -r line <&"$answers"; printf '%s\n' "$line" > "$FHIRLAKE_DBT_DATABASE.creds"`

func TestDBTBuildGetsOnlyTheTenantsCredentialsAndNotInItsEnvironment(t *testing.T) {
	t.Setenv("FHIRLAKE_TENANT_GLOBEX_SECRET_KEY", "globex-secret")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "ambient-secret")
	d, err := NewDBT(DBT{Path: fakeDBT(t, askCredentials+"\n"+writeResults), Threads: 3, MemoryLimit: "1GB", ExtensionDir: "/ext"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	acme := &S3Access{Endpoint: "http://127.0.0.1:17070", PathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("acme-key", "acme-secret", "acme-token")}
	env, err := acme.env("s3://fhirlake-acme/runs/1")
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Build(context.Background(), BuildRequest{Tenant: "acme", Dir: dir, Target: "tenant", Env: env, Credentials: acme.Credentials,
		Vars: map[string]any{"lake": "s3://fhirlake-acme/runs/1", "speed_partitions": map[string][]string{"resources": {"2026-11-25"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 1 || res.Metadata.DBTVersion != "1.12.0" {
		t.Errorf("results: %+v", res)
	}
	got, err := os.ReadFile(filepath.Join(dir, "batch.duckdb.env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"globex-secret", "ambient-secret", "acme-key", "acme-secret", "acme-token"} {
		if strings.Contains(string(got), bad) {
			t.Errorf("dbt's environment holds %s:\n%s", bad, got)
		}
	}
	creds, err := os.ReadFile(filepath.Join(dir, "batch.duckdb.creds"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"key_id":"acme-key","secret":"acme-secret","session_token":"acme-token"}` + "\n"; string(creds) != want {
		t.Errorf("dbt was handed %s, want %s", creds, want)
	}
	for _, want := range []string{
		"FHIRLAKE_DBT_S3_ENDPOINT=127.0.0.1:17070", "FHIRLAKE_DBT_S3_USE_SSL=false", "FHIRLAKE_DBT_S3_URL_STYLE=path",
		"FHIRLAKE_DBT_S3_SCOPE=s3://fhirlake-acme/runs/1", "FHIRLAKE_DBT_DUCKDB_THREADS=3", "FHIRLAKE_DBT_MEMORY_LIMIT=1GB",
		"FHIRLAKE_DUCKDB_EXTENSION_DIR=/ext", "DO_NOT_TRACK=1",
	} {
		if !strings.Contains(string(got), want+"\n") {
			t.Errorf("dbt's environment lacks %s", want)
		}
	}
	args, _ := os.ReadFile(filepath.Join(dir, "batch.duckdb.args"))
	for _, want := range []string{"build\n", "--target\ntenant\n", `{"lake":"s3://fhirlake-acme/runs/1","speed_partitions":{"resources":["2026-11-25"]}}`} {
		if !strings.Contains(string(args), want) {
			t.Errorf("dbt's arguments lack %q:\n%s", want, args)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "project", "dbt_project.yml")); err != nil {
		t.Errorf("the built-in project was not written for the run: %v", err)
	}
}

func TestDBTBuildWithoutResults(t *testing.T) {
	d, err := NewDBT(DBT{Path: fakeDBT(t, "echo 'Compilation Error in model patients'; exit 2")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Build(context.Background(), BuildRequest{Tenant: "acme", Dir: t.TempDir(), Target: "local"})
	var be *BuildError
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "exit status 2") || !strings.Contains(err.Error(), "Compilation Error in model patients") {
		t.Errorf("got %v, want dbt's exit status and output", err)
	}
}

func TestDBTBuildCancelledStopsDBT(t *testing.T) {
	d, err := NewDBT(DBT{Path: fakeDBT(t, "sleep 60"), StopGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = d.Build(ctx, BuildRequest{Tenant: "acme", Dir: t.TempDir(), Target: "local"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want the deadline", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("dbt was stopped after %s", took)
	}
}

func TestNewDBT(t *testing.T) {
	if _, err := NewDBT(DBT{}); !errors.Is(err, ErrNoDBT) {
		t.Errorf("no path: got %v", err)
	}
	if _, err := NewDBT(DBT{Path: filepath.Join(t.TempDir(), "nope")}); !errors.Is(err, ErrNoDBT) {
		t.Errorf("missing executable: got %v", err)
	}
	a, err := NewDBT(DBT{Path: fakeDBT(t, "")})
	if err != nil {
		t.Fatal(err)
	}
	// A checkout of the same project fingerprints the same; a changed one does not.
	dir := t.TempDir()
	if err := writeProject(dir); err != nil {
		t.Fatal(err)
	}
	b, err := NewDBT(DBT{Path: a.Path, ProjectDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if a.Project() != b.Project() {
		t.Errorf("fingerprints differ: embedded %s, written copy %s", a.Project(), b.Project())
	}
	f := filepath.Join(dir, "models", "marts", "patients.sql")
	body, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, append(body, "\n-- changed\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := NewDBT(DBT{Path: a.Path, ProjectDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if c.Project() == a.Project() {
		t.Error("a changed model kept the fingerprint")
	}
	if _, err := dbtproject.Project.ReadFile("models/staging/_sources.yml"); err != nil {
		t.Errorf("the embedded project lacks the files starting with _: %v", err)
	}
}

func TestS3AccessEnv(t *testing.T) {
	if _, err := (&S3Access{}).env("s3://b"); err == nil {
		t.Error("no credentials: want an error")
	}
	env, err := (&S3Access{Credentials: credentials.NewStaticCredentialsProvider("k", "s", "")}).env("s3://b")
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(env, " ")
	for _, want := range []string{"ENDPOINT=s3.amazonaws.com", "USE_SSL=true", "URL_STYLE=vhost", "REGION=us-east-1"} {
		if !strings.Contains(joined, want) {
			t.Errorf("AWS defaults lack %s: %s", want, joined)
		}
	}
}
