//go:build integration

package main

import (
	"context"
	"encoding/csv"
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

	"fhirlake/lake"
	"fhirlake/sink"
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
	// Batch is what Spark read of the batch tables; nil without any.
	Batch *sparkBatch `json:"batch"`
}

// sparkBatch is what testdata/spark_read.py reads of the batch tables: each one's
// rows and delete files, and the questions iceberg_batch_read.py asks.
type sparkBatch struct {
	Tables   map[string]int64 `json:"tables"`
	Deletes  map[string]int64 `json:"deletes"`
	PerType  string           `json:"per_type"`
	Latest   string           `json:"latest"`
	Patients string           `json:"patients"`
}

// compareBatch compares what Spark read of a tenant's batch tables with fhirlake query
// (query): the rows of every mart, the live resources per type and the md5 of their
// type/id/version (resources_latest), the md5 of the patients mart.
func compareBatch(t *testing.T, tenant, catalog, step string, b *sparkBatch, query func(string) string, compare func(tenant, catalog, question, spark, want string)) {
	t.Helper()
	if b == nil {
		t.Errorf("%s: spark (%s catalog) found no batch tables of %s", step, catalog, tenant)
		return
	}
	compare(tenant, catalog, step+": resources_latest: live per type", b.PerType,
		query(`SELECT coalesce(string_agg(resource_type || ':' || n, ',' ORDER BY resource_type), '') FROM (SELECT resource_type, count(*) AS n FROM resources GROUP BY 1)`))
	compare(tenant, catalog, step+": resources_latest: md5 of type/id/version", b.Latest,
		query(`SELECT md5(coalesce(string_agg(resource_type || '/' || id || '/' || coalesce(version_id, ''), ',' ORDER BY resource_type, id), '')) FROM resources`))
	compare(tenant, catalog, step+": patients: md5 of its rows", b.Patients,
		query(`SELECT md5(coalesce(string_agg(patient_id || '/' || coalesce(version_id, '') || '/' || coalesce(gender, '') || '/' || coalesce(CAST(birth_date AS VARCHAR), ''), ',' ORDER BY patient_id), '')) FROM patients`))
	marts := make([]string, 0, len(b.Tables))
	for n := range b.Tables {
		if !strings.HasSuffix(n, "_latest") {
			marts = append(marts, n)
		}
	}
	sort.Strings(marts)
	for _, n := range marts {
		compare(tenant, catalog, fmt.Sprintf("%s: %s: rows (%d delete files)", step, n, b.Deletes[n]), strconv.FormatInt(b.Tables[n], 10), query("SELECT count(*) FROM "+n))
	}
	compare(tenant, catalog, fmt.Sprintf("%s: resources_latest: delete files", step), strconv.FormatBool(b.Deletes["resources_latest"] > 0), strconv.FormatBool(step != "full"))
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
// that docs/format/iceberg.md ships. Another tenant's key reads none of it. After
// `fhirlake compact` (a full run, then an incremental one over updates and deletes,
// whose state and marts merge on read with position deletes), Spark reads the batch
// tables as fhirlake query reads the lake: every mart's rows, resources_latest's live
// resources per type and their versions, the patients mart's rows.
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
	needDBT(t)
	rest, postgres, _ := needIceberg(t)
	tenants := []string{"acme", "globex"}
	// The compactor keeps the speed files (speed_retention's default), which the change
	// tables hold; rebase_share makes the second run merge the state on read.
	r := newRun(t, st, tenants, bucket, "compact:\n  consistency_delay: 0s\n  overlap: 0s\n  rebase_share: 0.9\n  timeout: 20m\n")
	r.fhirlake(t, "topics", "create")
	s := r.generate(t, st, "--tenants", strings.Join(tenants, ","), "--patients", "40", "--seed", "11",
		"--updates", "0.3", "--deletes", "0.1", "--formats", "r4-backport,r5")

	// Both catalogs hold the same tables: configure points the configuration at one.
	base := readFile(t, r.config)
	catalogs := []string{
		fmt.Sprintf("iceberg:\n  catalog: rest\n  uri: %s\n  warehouse: _iceberg_rest\n", rest),
		"iceberg:\n  catalog: sql\n  uri: \"\"\n  uri_env: FHIRLAKE_STACK_POSTGRES_URI\n  warehouse: _iceberg_pg\n  name: " + r.id + "\n",
	}
	configure := func(yaml string) {
		t.Helper()
		merged, err := mergeYAML(base, yaml)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(r.config, []byte(merged), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	register := func() {
		t.Helper()
		for _, c := range catalogs {
			configure(c)
			t.Logf("register:\n%s", r.fhirlake(t, "register", "--once"))
		}
	}
	// compact compacts into both catalogs: the run with the first compacts, the one
	// with the second finds nothing new and brings its tables to the same snapshot.
	compact := func() {
		t.Helper()
		for _, c := range catalogs {
			configure(c)
			r.mustCompact(t)
		}
	}

	query := func(tenant, q string) string {
		t.Helper()
		out, err := r.cmd(context.Background(), "query", "--tenant", tenant, "--format", "csv", q).Output()
		if err != nil {
			t.Fatalf("fhirlake query %s: %v", q, err)
		}
		rec, err := csv.NewReader(strings.NewReader(lastLine(string(out)))).Read()
		if err != nil || len(rec) != 1 {
			t.Fatalf("fhirlake query %s: %q (%v)", q, out, err)
		}
		return rec[0]
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
	readAll := func(step string) {
		t.Helper()
		for _, tn := range tenants {
			got, took := readSpark(t, python, rest, postgres, r.id, tn, tn)
			version = got.Spark
			// resources_all is every change until a snapshot holds them (then its state)
			wantLatest := query(tn, `SELECT count(*) || ' ' || md5(coalesce(string_agg(resource_type || '/' || id || '/' || coalesce(version_id, ''), ',' ORDER BY resource_type, id), '')) FROM resources`)
			for _, cat := range []struct {
				name string
				res  sparkCatalog
			}{{"rest", got.REST}, {"sql", got.SQL}} {
				res := cat.res
				if res.Error != "" {
					t.Fatalf("%s: spark reading %s's tables through the %s catalog: %s", step, tn, cat.name, res.Error)
				}
				if step == "changes" {
					compare(tn, cat.name, step+": resources: changes", strconv.FormatInt(res.Tables["resources"], 10), query(tn, "SELECT count(*) FROM resources_all"))
				}
				if len(res.Latest) != 2 {
					t.Fatalf("spark (%s catalog): latest %v", cat.name, res.Latest)
				}
				compare(tn, cat.name, step+": latest versions (count md5)", fmt.Sprintf("%v %v", res.Latest[0], res.Latest[1]), wantLatest)
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
						fmt.Fprintf(tw, "%s\t%s\t%s: %s: live rows\t(refused)\t%s\tMISMATCH\n", tn, cat.name, step, v, want)
						continue
					}
					compare(tn, cat.name, step+": "+v+": live rows", strconv.FormatInt(res.Tables[v], 10), want)
				}
				if step != "changes" {
					compareBatch(t, tn, cat.name, step, res.Batch, func(q string) string { return query(tn, q) }, compare)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s: spark's seconds for these\t%.1f\t\t\n", tn, cat.name, step, res.Seconds)
			}
			fmt.Fprintf(tw, "%s\t\t%s: spark job, JVM start included (s)\t%.1f\t\t\n", tn, step, took.Seconds())
		}
	}

	s.produce(t, s.total()/2)
	r.consumeAll(t, st)
	register()
	readAll("changes")
	compact()
	readAll("full")

	// Updates and deletes of the resources compacted: an incremental run publishes the
	// state and the marts merged on read, with position deletes.
	s.produce(t, -1)
	r.consumeAll(t, st)
	register()
	compact()
	for _, tn := range tenants {
		m, err := sink.ReadManifest(context.Background(), r.tenantStore(t, st, tn))
		if err != nil || m == nil {
			t.Fatalf("%s: manifest %v, %v", tn, m, err)
		}
		if !m.Models[lake.StateModel(lake.RawDataset)].Merged() {
			t.Fatalf("%s: the second run did not merge the state on read: %+v", tn, m.Models[lake.StateModel(lake.RawDataset)])
		}
	}
	readAll("incremental")

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
