//go:build integration

package main

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"

	"fhirlake/internal/testenv"
)

// runDBT builds the dbt project over one tenant's speed layer in its bucket,
// read through httpfs with that tenant's key, and returns the DuckDB file
// holding the marts.
func runDBT(t *testing.T, st stack, r *run, tenant string) string {
	t.Helper()
	dbt := os.Getenv("FHIRLAKE_DBT")
	if dbt == "" {
		t.Fatal("FHIRLAKE_DBT is not set: run under deploy/local/test")
	}
	dir := filepath.Join(r.dir, "dbt-"+tenant)
	db := filepath.Join(dir, "marts.duckdb")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dbt, "build", "--profiles-dir", ".", "--target-path", filepath.Join(dir, "target"), "--log-path", filepath.Join(dir, "logs"))
	cmd.Dir = filepath.Join(testenv.RepoRoot(), "dbt")
	cmd.Env = append(os.Environ(),
		"FHIRLAKE_SPEED_RESOURCES=s3://"+bucket(tenant)+"/"+r.prefix+"/speed/resources/*/*.parquet",
		"FHIRLAKE_DBT_DATABASE="+db,
		"PYTHONPATH=plugins", "PYTHONDONTWRITEBYTECODE=1",
		"FHIRLAKE_DBT_S3_ACCESS_KEY="+os.Getenv(envName(tenant, "ACCESS_KEY")),
		"FHIRLAKE_DBT_S3_SECRET_KEY="+os.Getenv(envName(tenant, "SECRET_KEY")),
		"FHIRLAKE_DBT_S3_ENDPOINT="+strings.TrimPrefix(st.endpoint, "http://"),
		"FHIRLAKE_DBT_S3_URL_STYLE=path",
		"FHIRLAKE_DBT_S3_USE_SSL=false",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dbt build for %s: %v\n%s", tenant, err, out)
	}
	return db
}

func martCount(t *testing.T, db, q string) int {
	t.Helper()
	conn, err := sql.Open("duckdb", db+"?access_mode=READ_ONLY")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n int
	if err := conn.QueryRow(q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}
