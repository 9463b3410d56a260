//go:build integration

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"fhirlake/lake"
)

// icebergRead is what testdata/iceberg_read.py prints for one engine.
type icebergRead struct {
	Tables map[string]int64 `json:"tables"`
	Latest []any            `json:"latest"`
	Error  string           `json:"error"`
}

func needIceberg(t *testing.T) (rest, postgres, python string) {
	t.Helper()
	rest, postgres, python = os.Getenv("FHIRLAKE_STACK_CATALOG_REST_URI"), os.Getenv("FHIRLAKE_STACK_POSTGRES_URI"), os.Getenv("FHIRLAKE_STACK_ICEBERG_PYTHON")
	if rest == "" || postgres == "" || python == "" {
		t.Fatal(`the stack's Iceberg services are not configured: eval "$(deploy/local/stack env)" after "deploy/local/stack up"`)
	}
	return rest, postgres, python
}

// readIceberg reads a tenant's tables with pyiceberg and DuckDB, with the S3 key of
// the tenant `as`.
func readIceberg(t *testing.T, python, kind, uri, name, tenant, as string) map[string]icebergRead {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, python, "testdata/iceberg_read.py", kind, uri, name, tenant, lake.LatestSQL("src", ""))
	c.Env = append(os.Environ(), "READ_ACCESS_KEY="+os.Getenv(envName(as, "ACCESS_KEY")), "READ_SECRET_KEY="+os.Getenv(envName(as, "SECRET_KEY")))
	c.Stderr = os.Stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("iceberg_read.py %s %s: %v\n%s", kind, tenant, err, out)
	}
	var res map[string]icebergRead
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("iceberg_read.py: %v\n%s", err, out)
	}
	return res
}

// TestIntegrationIcebergEnginesAgree: changes consumed from Kafka into S3 and
// registered as Iceberg tables (REST catalog, and the SQL catalog on PostgreSQL) read
// the same in pyiceberg and DuckDB's iceberg extension as in `fhirlake query`: the
// changes, each view's rows and the latest version of every resource. Another
// tenant's key reads none of it.
func TestIntegrationIcebergEnginesAgree(t *testing.T) {
	st := needStack(t)
	rest, postgres, python := needIceberg(t)
	tenants := []string{"acme", "globex"}
	r := newRun(t, st, tenants, bucket, "")
	r.fhirlake(t, "generate", "-q", "--tenants", strings.Join(tenants, ","), "--patients", "40", "--seed", "11",
		"--updates", "0.3", "--deletes", "0.1", "--formats", "r4-backport,r5")
	c := r.startConsumer(t)
	r.waitLag(t, r.admin(t, st), 3*time.Minute)
	stopConsumer(t, c)

	// fhirlake's own answers
	query := func(tenant, q string) string {
		t.Helper()
		out, err := r.cmd(context.Background(), "query", "--tenant", tenant, "--format", "csv", q).Output()
		if err != nil {
			t.Fatalf("fhirlake query %s: %v", q, err)
		}
		return strings.TrimSpace(lastLine(string(out)))
	}
	for _, cat := range []struct{ kind, uri, name, yaml string }{
		{"rest", rest, "fhirlake", fmt.Sprintf("iceberg:\n  catalog: rest\n  uri: %s\n  warehouse: _iceberg_rest\n", rest)},
		{"sql", postgres, r.id, "iceberg:\n  catalog: sql\n  uri: \"\"\n  uri_env: FHIRLAKE_STACK_POSTGRES_URI\n  warehouse: _iceberg_pg\n  name: " + r.id + "\n"},
	} {
		t.Run(cat.kind, func(t *testing.T) {
			merged, err := mergeYAML(readFile(t, r.config), cat.yaml)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(r.config, []byte(merged), 0o644); err != nil {
				t.Fatal(err)
			}
			// The REST fixture is one catalog: its tenants' tables are shared by runs, and
			// each pass makes them hold exactly this run's files.
			out := r.fhirlake(t, "register", "--once")
			t.Logf("register:\n%s", out)
			if again := r.fhirlake(t, "register", "--once"); strings.Contains(again, "(+") && !strings.Contains(again, "(+0 -0)") {
				t.Fatalf("a second pass registered again:\n%s", again)
			}
			for _, tn := range tenants {
				wantChanges := query(tn, "SELECT count(*) FROM resources_all")
				wantLatest := query(tn, `SELECT count(*) || ' ' || md5(coalesce(string_agg(resource_type || '/' || id || '/' || coalesce(version_id, ''), ',' ORDER BY resource_type, id), '')) FROM resources`)
				got := readIceberg(t, python, cat.kind, cat.uri, cat.name, tn, tn)
				for engine, res := range got {
					if res.Error != "" {
						t.Fatalf("%s reading %s's tables: %s", engine, tn, res.Error)
					}
					if s := strconv.FormatInt(res.Tables["resources"], 10); s != wantChanges {
						t.Errorf("%s: %s.resources holds %s changes, fhirlake query %s", engine, tn, s, wantChanges)
					}
					if s := fmt.Sprintf("%v %v", res.Latest[0], res.Latest[1]); s != wantLatest {
						t.Errorf("%s: %s's latest versions %s, fhirlake query %s", engine, tn, s, wantLatest)
					}
					views := make([]string, 0, len(res.Tables))
					for v := range res.Tables {
						if v != lake.RawDataset {
							views = append(views, v)
						}
					}
					sort.Strings(views)
					if len(views) == 0 {
						t.Fatalf("%s: no view tables for %s", engine, tn)
					}
					for _, v := range views {
						if want := query(tn, "SELECT count(*) FROM "+v); strconv.FormatInt(res.Tables[v], 10) != want {
							t.Errorf("%s: %s.%s has %d live rows, fhirlake query %s", engine, tn, v, res.Tables[v], want)
						}
					}
					t.Logf("%s agrees on %s: %s changes, latest %s, %d views", engine, tn, wantChanges, wantLatest, len(views))
				}
			}
			// globex's key cannot read acme's files, whatever the catalog says
			for engine, res := range readIceberg(t, python, cat.kind, cat.uri, cat.name, "acme", "globex") {
				e := strings.ToLower(res.Error)
				if !strings.Contains(e, "denied") && !strings.Contains(e, "forbidden") {
					t.Errorf("%s with globex's key on acme's tables: %+v, want the store's refusal", engine, res)
				} else {
					t.Logf("%s refused globex's key on acme's tables: %s", engine, res.Error)
				}
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
