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
	"text/tabwriter"
	"time"
)

// sparkRead is what testdata/spark_read.py prints: per catalog (rest, sql) what
// Spark read and how long it took, and Spark's version.
type sparkRead struct {
	Spark string       `json:"spark"`
	REST  sparkCatalog `json:"rest"`
	SQL   sparkCatalog `json:"sql"`
}

type sparkCatalog struct {
	icebergRead
	// Refused are the view tables Spark could not read, and why.
	Refused map[string]string `json:"refused"`
	Seconds float64           `json:"seconds"`
}

// readSpark runs testdata/spark_read.py for namespace tenant with the S3 key of the
// tenant `as`, and returns its answer and the wall time of the whole Spark job (the JVM
// start included).
func readSpark(t *testing.T, python, rest, postgres, sqlName, tenant, as string) (sparkRead, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, python, "testdata/spark_read.py", tenant, rest, postgres, sqlName, "../../docs/format/iceberg.md")
	c.Env = append(os.Environ(), "READ_ACCESS_KEY="+os.Getenv(envName(as, "ACCESS_KEY")), "READ_SECRET_KEY="+os.Getenv(envName(as, "SECRET_KEY")))
	c.Stderr = os.Stderr
	start := time.Now()
	out, err := c.Output()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("spark_read.py %s as %s: %v\n%s", tenant, as, err, out)
	}
	var res sparkRead
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("spark_read.py: %v\n%s", err, out)
	}
	return res, took
}

// TestInteropSpark is `make interop`: changes consumed from Kafka into S3 and
// registered as Iceberg tables in the REST catalog and in the SQL catalog on
// PostgreSQL read the same in Apache Spark (PySpark with Iceberg's Spark runtime,
// each tenant's own S3 key) as in `fhirlake query`: each table's changes, the latest
// version of every resource and each view's live rows, through the Spark SQL views
// that docs/format/iceberg.md ships. Another tenant's key reads none of it.
//
// Opt-in (FHIRLAKE_INTEROP=1): PySpark and the jars are installed by
// deploy/local/iceberg/interop, which sets FHIRLAKE_SPARK_PYTHON and FHIRLAKE_SPARK_JARS.
// Its name keeps it out of `-run Integration`.
func TestInteropSpark(t *testing.T) {
	if os.Getenv("FHIRLAKE_INTEROP") != "1" {
		t.Skip("opt-in: make interop")
	}
	python := os.Getenv("FHIRLAKE_SPARK_PYTHON")
	if python == "" || os.Getenv("FHIRLAKE_SPARK_JARS") == "" {
		t.Fatal("FHIRLAKE_SPARK_PYTHON and FHIRLAKE_SPARK_JARS are not set: run make interop")
	}
	st := needStack(t)
	rest, postgres, _ := needIceberg(t)
	tenants := []string{"acme", "globex"}
	r := newRun(t, st, tenants, bucket, "")
	r.fhirlake(t, "generate", "-q", "--tenants", strings.Join(tenants, ","), "--patients", "40", "--seed", "11",
		"--updates", "0.3", "--deletes", "0.1", "--formats", "r4-backport,r5")
	c := r.startConsumer(t)
	r.waitLag(t, r.admin(t, st), 3*time.Minute)
	stopConsumer(t, c)

	// the same files registered in both catalogs
	base := readFile(t, r.config)
	for _, yaml := range []string{
		fmt.Sprintf("iceberg:\n  catalog: rest\n  uri: %s\n  warehouse: _iceberg_rest\n", rest),
		"iceberg:\n  catalog: sql\n  uri: \"\"\n  uri_env: FHIRLAKE_STACK_POSTGRES_URI\n  warehouse: _iceberg_pg\n  name: " + r.id + "\n",
	} {
		merged, err := mergeYAML(base, yaml)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(r.config, []byte(merged), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("register:\n%s", r.fhirlake(t, "register", "--once"))
	}

	query := func(tenant, q string) string {
		t.Helper()
		out, err := r.cmd(context.Background(), "query", "--tenant", tenant, "--format", "csv", q).Output()
		if err != nil {
			t.Fatalf("fhirlake query %s: %v", q, err)
		}
		return strings.TrimSpace(lastLine(string(out)))
	}
	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "tenant\tcatalog\tquestion\tspark\tfhirlake query\t")
	compare := func(tenant, catalog, question, spark, want string) {
		mark := ""
		if spark != want {
			mark = "MISMATCH"
			t.Errorf("spark (%s catalog): %s %s = %s, fhirlake query %s", catalog, tenant, question, spark, want)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", tenant, catalog, question, spark, want, mark)
	}
	var version string
	for _, tn := range tenants {
		got, took := readSpark(t, python, rest, postgres, r.id, tn, tn)
		version = got.Spark
		wantChanges := query(tn, "SELECT count(*) FROM resources_all")
		wantLatest := query(tn, `SELECT count(*) || ' ' || md5(coalesce(string_agg(resource_type || '/' || id || '/' || coalesce(version_id, ''), ',' ORDER BY resource_type, id), '')) FROM resources`)
		for _, cat := range []struct {
			name string
			res  sparkCatalog
		}{{"rest", got.REST}, {"sql", got.SQL}} {
			res := cat.res
			if res.Error != "" {
				t.Fatalf("spark reading %s's tables through the %s catalog: %s", tn, cat.name, res.Error)
			}
			compare(tn, cat.name, "resources: changes", strconv.FormatInt(res.Tables["resources"], 10), wantChanges)
			if len(res.Latest) != 2 {
				t.Fatalf("spark (%s catalog): latest %v", cat.name, res.Latest)
			}
			compare(tn, cat.name, "latest versions (count md5)", fmt.Sprintf("%v %v", res.Latest[0], res.Latest[1]), wantLatest)
			views := make([]string, 0, len(res.Tables)+len(res.Refused))
			for v := range res.Tables {
				if v != "resources" {
					views = append(views, v)
				}
			}
			for v := range res.Refused {
				views = append(views, v)
			}
			if len(views) == 0 {
				t.Fatalf("spark (%s catalog): no view tables for %s", cat.name, tn)
			}
			sort.Strings(views)
			for _, v := range views {
				want := query(tn, "SELECT count(*) FROM "+v)
				if why, ok := res.Refused[v]; ok {
					t.Errorf("spark (%s catalog) cannot read %s.%s: %s", cat.name, tn, v, why)
					fmt.Fprintf(tw, "%s\t%s\t%s: live rows\t(refused)\t%s\tMISMATCH\n", tn, cat.name, v, want)
					continue
				}
				compare(tn, cat.name, v+": live rows", strconv.FormatInt(res.Tables[v], 10), want)
			}
			fmt.Fprintf(tw, "%s\t%s\tspark's seconds for these\t%.1f\t\t\n", tn, cat.name, res.Seconds)
		}
		fmt.Fprintf(tw, "%s\t\tspark job, JVM start included (s)\t%.1f\t\t\n", tn, took.Seconds())
	}

	// globex's key cannot read acme's files, whatever the catalog says
	got, _ := readSpark(t, python, rest, postgres, r.id, "acme", "globex")
	for name, res := range map[string]sparkCatalog{"rest": got.REST, "sql": got.SQL} {
		e := strings.ToLower(res.Error)
		refused := strings.Contains(e, "denied") || strings.Contains(e, "forbidden") || strings.Contains(e, "status code: 403")
		if !refused {
			t.Errorf("spark (%s catalog) with globex's key on acme's tables: %+v, want the store's refusal", name, res)
		}
		fmt.Fprintf(tw, "acme as globex\t%s\trefused by the store\t%v\ttrue\t\n", name, refused)
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Spark %s against fhirlake query:\n%s", version, table.String())
}
