//go:build integration

package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"fhirlake/lake"
	"fhirlake/sink"
)

// batchRead is what testdata/iceberg_batch_read.py prints for one engine.
type batchRead struct {
	Tables   map[string]int64 `json:"tables"`
	PerType  string           `json:"per_type"`
	Latest   string           `json:"latest"`
	Patients string           `json:"patients"`
	Error    string           `json:"error"`
}

// readBatchTables reads a tenant's batch tables with pyiceberg and DuckDB: each
// engine's answers, and each table's current Iceberg snapshot id.
func readBatchTables(t *testing.T, python, kind, uri, name, tenant string) (map[string]batchRead, map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, python, "testdata/iceberg_batch_read.py", kind, uri, name, tenant)
	c.Env = append(os.Environ(), "READ_ACCESS_KEY="+os.Getenv(envName(tenant, "ACCESS_KEY")), "READ_SECRET_KEY="+os.Getenv(envName(tenant, "SECRET_KEY")))
	c.Stderr = os.Stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("iceberg_batch_read.py %s: %v\n%s", tenant, err, out)
	}
	var res struct {
		Snapshots map[string]string `json:"snapshots"`
		PyIceberg batchRead         `json:"pyiceberg"`
		DuckDB    batchRead         `json:"duckdb"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("iceberg_batch_read.py: %v\n%s", err, out)
	}
	return map[string]batchRead{"pyiceberg": res.PyIceberg, "duckdb": res.DuckDB}, res.Snapshots
}

// TestIntegrationIcebergBatchTables: `fhirlake compact` with a catalog publishes every
// model of the snapshot as an Iceberg table (the SQL catalog on PostgreSQL, and the
// REST catalog; files in the tenant's bucket), which pyiceberg and DuckDB's
// iceberg_scan read as `fhirlake query` reads the lake: rows per mart, live resources
// per type and their versions, the patients mart. After updates and deletes an
// incremental run publishes the state merged on read (position deletes), and the
// engines still agree; a run that fails a dbt test leaves every table at its snapshot.
func TestIntegrationIcebergBatchTables(t *testing.T) {
	st := needStack(t)
	needDBT(t)
	rest, postgres, python := needIceberg(t)
	t.Run("sql", func(t *testing.T) {
		batchTables(t, st, python, "sql", postgres, func(id string) string {
			return "iceberg:\n  catalog: sql\n  uri: \"\"\n  uri_env: FHIRLAKE_STACK_POSTGRES_URI\n  warehouse: _iceberg_pg\n  name: " + id + "\n"
		})
	})
	t.Run("rest", func(t *testing.T) {
		// The REST fixture is one catalog for every run: a run's commits make the
		// tenant's tables hold its own snapshot.
		batchTables(t, st, python, "rest", rest, func(string) string {
			return "iceberg:\n  catalog: rest\n  uri: " + rest + "\n  warehouse: _iceberg_rest\n"
		})
	})
}

func batchTables(t *testing.T, st stack, python, kind, uri string, section func(run string) string) {
	tenant := "acme"
	r := newRun(t, st, []string{tenant}, bucket, compactSettings+"  overlap: 0s\n  rebase_share: 0.9\n  keep_snapshots: 1\n  orphan_grace: 1s\n")
	name := r.id
	if kind == "rest" {
		name = "fhirlake"
	}
	merged, err := mergeYAML(readFile(t, r.config), section(r.id))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.config, []byte(merged), 0o644); err != nil {
		t.Fatal(err)
	}
	r.fhirlake(t, "topics", "create")
	s := r.generate(t, st, "--tenants", tenant, "--patients", "40", "--seed", "31",
		"--updates", "0.3", "--deletes", "0.15", "--malformed", "0", "--unroutable", "0")
	store := r.tenantStore(t, st, tenant)

	query := func(q string) string {
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
	agree := func(step string) map[string]string {
		t.Helper()
		m, err := sink.ReadManifest(context.Background(), store)
		if err != nil || m == nil {
			t.Fatalf("%s: manifest %v, %v", step, m, err)
		}
		reads, snaps := readBatchTables(t, python, kind, uri, name, tenant)
		wantPerType := query(`SELECT coalesce(string_agg(resource_type || ':' || n, ',' ORDER BY resource_type), '') FROM (SELECT resource_type, count(*) AS n FROM resources GROUP BY 1)`)
		wantLatest := query(`SELECT md5(coalesce(string_agg(resource_type || '/' || id || '/' || coalesce(version_id, ''), ',' ORDER BY resource_type, id), '')) FROM resources`)
		wantPatients := query(`SELECT md5(coalesce(string_agg(patient_id || '/' || coalesce(version_id, '') || '/' || coalesce(gender, '') || '/' || coalesce(CAST(birth_date AS VARCHAR), ''), ',' ORDER BY patient_id), '')) FROM patients`)
		var marts []string
		for _, model := range m.ModelNames() {
			if _, state := lake.ParseStateModel(model); !state {
				marts = append(marts, model)
			}
		}
		sort.Strings(marts)
		for engine, got := range reads {
			if got.Error != "" {
				t.Fatalf("%s: %s reading the batch tables: %s", step, engine, got.Error)
			}
			if len(got.Tables) != len(m.Models) {
				t.Errorf("%s: %s sees %d batch tables, the snapshot has %d models", step, engine, len(got.Tables), len(m.Models))
			}
			if got.PerType != wantPerType {
				t.Errorf("%s: %s: live resources per type %s, fhirlake query %s", step, engine, got.PerType, wantPerType)
			}
			if got.Latest != wantLatest {
				t.Errorf("%s: %s: latest versions md5 %s, fhirlake query %s", step, engine, got.Latest, wantLatest)
			}
			if got.Patients != wantPatients {
				t.Errorf("%s: %s: patients md5 %s, fhirlake query %s", step, engine, got.Patients, wantPatients)
			}
			for _, mart := range marts {
				if want := query("SELECT count(*) FROM " + mart); strconv.FormatInt(got.Tables[mart], 10) != want {
					t.Errorf("%s: %s: %s has %d rows, fhirlake query %s", step, engine, mart, got.Tables[mart], want)
				}
			}
		}
		t.Logf("%s: snapshot %s, %d tables; compared with fhirlake query: %s", step, m.SnapshotID, len(snaps), wantPerType)
		return snaps
	}

	s.produce(t, s.total()/2)
	r.consumeAll(t, st)
	r.mustCompact(t)
	agree("full")

	s.produce(t, -1)
	r.consumeAll(t, st)
	// keep_snapshots 1: the tables expire the first run's snapshots, and their
	// manifest lists and manifests leave the bucket; the engines read on.
	if out := r.mustCompact(t); !strings.Contains(out, "removed orphan table metadata") {
		t.Errorf("the incremental run removed no expired snapshot's metadata:\n%s", out)
	}
	m, err := sink.ReadManifest(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Models[lake.StateModel(lake.RawDataset)].Merged() {
		t.Fatalf("the second run did not merge the state on read: %+v", m.Models[lake.StateModel(lake.RawDataset)])
	}
	deletes, err := store.List(context.Background(), lake.ModelKey(m.SnapshotID, lake.StateModel(lake.RawDataset), "deletes_"))
	if err != nil || len(deletes) == 0 {
		t.Fatalf("the merged state has no position deletes in its snapshot (%v)", err)
	}
	before := agree("incremental")

	// A run that fails a dbt test publishes nothing: every table stays at its snapshot.
	injectBadObservation(t, store)
	if out, code := r.compact(t); code == 0 {
		t.Fatalf("compact exited 0 although the data breaks a test:\n%s", out)
	}
	_, after := readBatchTables(t, python, kind, uri, name, tenant)
	for name, id := range before {
		if after[name] != id {
			t.Errorf("table %s: snapshot %s after the failed run, want %s kept", name, after[name], id)
		}
	}
}
