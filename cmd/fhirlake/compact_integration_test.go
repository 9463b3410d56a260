//go:build integration

// Integration tests of the batch layer against the real stack: notifications through
// the broker and `fhirlake consume` into each tenant's bucket (or a local directory),
// then `fhirlake compact` as a separate process running the real dbt from the
// project's virtualenv, reading S3 through httpfs with each tenant's own key.
package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/compactor"
	"fhirlake/config"
	"fhirlake/internal/testenv"
	"fhirlake/lake"
	"fhirlake/sink"
)

// compactSettings make every file count at once (the consumer has stopped before a
// compaction) and keep the speed layer, so runs can be compared.
const compactSettings = "compact:\n  consistency_delay: 0s\n  parallelism: 2\n  speed_retention: 0s\n  timeout: 20m\n"

func needDBT(t *testing.T) {
	t.Helper()
	if os.Getenv("FHIRLAKE_DBT") == "" || os.Getenv("FHIRLAKE_DUCKDB_EXTENSION_DIR") == "" {
		t.Fatal(`FHIRLAKE_DBT and FHIRLAKE_DUCKDB_EXTENSION_DIR are not set: run "make test", or eval "$(deploy/local/stack env)"`)
	}
}

// genStream is the output of `fhirlake generate --out FILE --expect FILE`, produced to
// the run's topic in parts.
type genStream struct {
	records []*kgo.Record
	sent    int
	expect  expectation
	cl      *kgo.Client
}

// generate runs `fhirlake generate` into a file with the given flags and reads back
// the records and the expected final state.
func (r *run) generate(t *testing.T, st stack, args ...string) *genStream {
	t.Helper()
	out, exp := filepath.Join(r.dir, "records.ndjson"), filepath.Join(r.dir, "expect.ndjson")
	r.fhirlake(t, append([]string{"generate", "-q", "--out", out, "--expect", exp}, args...)...)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	s := &genStream{expect: readExpect(t, exp)}
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var fr struct {
			Key     string            `json:"key"`
			Headers map[string]string `json:"headers"`
			Value   string            `json:"value"`
		}
		if err := json.Unmarshal(line, &fr); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		rec := &kgo.Record{Topic: r.topic, Key: []byte(fr.Key), Value: []byte(fr.Value)}
		for k, v := range fr.Headers {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
		s.records = append(s.records, rec)
	}
	if s.cl, err = kgo.NewClient(kgo.SeedBrokers(st.brokers...), kgo.ProducerLinger(5*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.cl.Close)
	return s
}

func (s *genStream) total() int { return len(s.records) }

// produce sends the next n records (all that are left when n < 0), in order.
func (s *genStream) produce(t *testing.T, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	end := len(s.records)
	if n >= 0 && s.sent+n < end {
		end = s.sent + n
	}
	if err := s.cl.ProduceSync(ctx, s.records[s.sent:end]...).FirstErr(); err != nil {
		t.Fatalf("produce: %v (if the broker is being restarted by another test, rerun later)", err)
	}
	s.sent = end
}

// consumeAll runs the consumer until the group has read everything produced.
func (r *run) consumeAll(t *testing.T, st stack) {
	t.Helper()
	c := r.startConsumer(t)
	r.waitLag(t, r.admin(t, st), 3*time.Minute)
	stopConsumer(t, c)
}

// compact runs `fhirlake compact` and returns its output and exit code.
func (r *run) compact(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	// Its report (stdout) and its log and audit lines (stderr) are read
	// apart and joined whole: one shared pipe let a log line land inside a
	// line of the report.
	cmd := r.cmd(ctx, append([]string{"compact", "--log-format", "json"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := append(stdout.Bytes(), stderr.Bytes()...)
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("fhirlake compact: %v\n%s", err, out)
	}
	return string(out), code
}

func (r *run) mustCompact(t *testing.T, args ...string) string {
	t.Helper()
	out, code := r.compact(t, args...)
	if code != 0 {
		t.Fatalf("fhirlake compact %v: exit %d\n%s", args, code, out)
	}
	return out
}

// tenantStore is a tenant's prefix of this run in its bucket, with its own key.
func (r *run) tenantStore(t *testing.T, st stack, tenant string) sink.Store {
	t.Helper()
	s, err := sink.NewS3(context.Background(), sink.S3Options{
		Bucket: bucket(tenant), Prefix: r.prefix, Endpoint: st.endpoint, PathStyle: true,
		AccessKey: os.Getenv(envName(tenant, "ACCESS_KEY")), SecretKey: os.Getenv(envName(tenant, "SECRET_KEY")),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// snapshot is a published snapshot copied to a local directory.
type snapshot struct {
	m   *lake.Manifest
	dir string
}

// currentSnapshot reads a tenant's manifest and downloads the snapshot it names.
func currentSnapshot(t *testing.T, store sink.Store) snapshot {
	t.Helper()
	ctx := context.Background()
	m, err := sink.ReadManifest(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	if m == nil {
		t.Fatalf("%s: no snapshot published", store.URL())
	}
	// Every file it references, under their keys: a state model's base may be an
	// earlier snapshot's.
	dir := t.TempDir()
	for _, mod := range m.Models {
		for _, key := range mod.Keys() {
			p := filepath.Join(dir, filepath.FromSlash(key))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := store.Get(ctx, key, &buf); err != nil {
				t.Fatalf("snapshot %s: %v", m.SnapshotID, err)
			}
			if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return snapshot{m: m, dir: dir}
}

// db opens the snapshot's tables as views.
func (s snapshot) db(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	for _, name := range s.m.ModelNames() {
		if _, err := db.Exec(fmt.Sprintf("CREATE VIEW %s AS SELECT * FROM %s", name, snapshotModelSQL(t, s.m, s.dir, name))); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// snapshotModelSQL is a model of m, in a lake (or a copy of its files) rooted at root,
// as a reader reads it: a model merged on read, its base without its changed keys and its delta.
func snapshotModelSQL(t *testing.T, m *lake.Manifest, root, model string) string {
	t.Helper()
	sql, err := m.ModelSQL(root, model)
	if err != nil {
		t.Fatal(err)
	}
	return sql
}

// martOf maps each resource mart to its resource type and key.
var martOf = map[string]struct{ typ, key string }{
	"patients":            {"Patient", "patient_id"},
	"encounters":          {"Encounter", "encounter_id"},
	"observations":        {"Observation", "observation_id"},
	"conditions":          {"Condition", "condition_id"},
	"procedures":          {"Procedure", "procedure_id"},
	"medication_requests": {"MedicationRequest", "medication_request_id"},
	"immunizations":       {"Immunization", "immunization_id"},
	"allergies":           {"AllergyIntolerance", "allergy_id"},
}

// checkMarts compares a snapshot with the generator's final state: each resource mart
// holds exactly the current resources of its type at their last version, the state
// model every resource with its deletes, and the dashboard marts one row per patient
// and per encounter.
func checkMarts(t *testing.T, s snapshot, tenant string, want map[string]expected) {
	t.Helper()
	db := s.db(t)
	query := func(q string) map[string]string {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		out := map[string]string{}
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				t.Fatal(err)
			}
			if _, dup := out[k]; dup {
				t.Errorf("tenant %s: %s twice in %s", tenant, k, q)
			}
			out[k] = v
		}
		return out
	}
	state := query("SELECT resource_type || '/' || resource_id, version_id || CASE WHEN is_deleted THEN ' deleted' ELSE '' END FROM int_resources__latest")
	wantState := map[string]string{}
	for k, e := range want {
		wantState[k] = e.VersionID
		if e.Deleted {
			wantState[k] += " deleted"
		}
	}
	diffMaps(t, tenant+" int_resources__latest", state, wantState)
	scalar := func(q string) int {
		var n int
		if err := db.QueryRow(q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	counts := map[string]int{}
	for mart, m := range martOf {
		got := query(fmt.Sprintf("SELECT '%s/' || %s, version_id FROM %s", m.typ, m.key, mart))
		wantMart := map[string]string{}
		for k, e := range want {
			if e.ResourceType == m.typ && !e.Deleted {
				wantMart[k] = e.VersionID
			}
		}
		diffMaps(t, tenant+" "+mart, got, wantMart)
		counts[mart] = len(got)
		// rows counts a model's base files (docs/format/snapshot.md): a merged mart's
		// base, as its rebuild wrote it; the mart is base ∖ changed ∪ delta.
		mod, base := s.m.Models[mart], int64(len(got))
		if mod.Merged() {
			files, err := s.m.Files(s.dir, mart)
			if err != nil {
				t.Fatal(err)
			}
			base = int64(scalar(fmt.Sprintf("SELECT count(*) FROM %s", lake.MergeSQL(nil, files, nil, nil))))
		}
		if rows := mod.Rows; rows != base {
			t.Errorf("tenant %s: manifest says %s has %d rows, its base has %d", tenant, mart, rows, base)
		}
	}
	for q, want := range map[string]int{
		"SELECT count(*) FROM patient_latest_vitals":                                        counts["patients"],
		"SELECT count(*) FROM encounter_summary":                                            counts["encounters"],
		"SELECT count(*) FROM patients WHERE birth_sex IS NULL OR len(race_codes) = 0":      0,
		"SELECT count(*) FROM observations WHERE code = '85354-9' AND component_count <> 2": 0,
		"SELECT count(*) FROM patient_latest_vitals WHERE body_weight IS NOT NULL": scalar(
			"SELECT count(DISTINCT patient_id) FROM observations WHERE code = '29463-7' AND status IN ('final', 'amended', 'corrected')"),
		"SELECT sum(diagnosis_count) FROM encounter_summary":                  scalar("SELECT count(*) FROM conditions WHERE encounter_id IS NOT NULL"),
		"SELECT count(*) FROM observations WHERE code_system_name <> 'loinc'": 0,
	} {
		if got := scalar(q); got != want {
			t.Errorf("tenant %s: %s: got %d, want %d", tenant, q, got, want)
		}
	}
	t.Logf("tenant %s: snapshot %s matches the final state: %v", tenant, s.m.SnapshotID, counts)
}

func diffMaps(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	var missing, extra, wrong []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing = append(missing, k)
		case g != w:
			wrong = append(wrong, fmt.Sprintf("%s: got %q, want %q", k, g, w))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			extra = append(extra, k)
		}
	}
	for _, l := range [][]string{missing, extra, wrong} {
		sort.Strings(l)
	}
	if len(missing)+len(extra)+len(wrong) > 0 {
		t.Errorf("%s: %d missing %v, %d unexpected %v, %d at the wrong version %v", what,
			len(missing), head(missing), len(extra), head(extra), len(wrong), head(wrong))
	}
}

func head(s []string) []string {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}

// sameTables checks that two snapshots hold the same rows in every table.
func sameTables(t *testing.T, a, b snapshot) {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if len(a.m.Models) != len(b.m.Models) {
		t.Errorf("snapshots %s and %s have %d and %d tables", a.m.SnapshotID, b.m.SnapshotID, len(a.m.Models), len(b.m.Models))
	}
	for name := range a.m.Models {
		for _, pair := range [][2]snapshot{{a, b}, {b, a}} {
			var n int
			x, y := snapshotModelSQL(t, pair[0].m, pair[0].dir, name), snapshotModelSQL(t, pair[1].m, pair[1].dir, name)
			var cols string
			// The columns by name: a merged state holds its base's order, a rebuilt one its own.
			if err := db.QueryRow("SELECT string_agg('\"' || column_name || '\"', ', ' ORDER BY column_name) FROM (DESCRIBE SELECT * FROM " + x + ")").Scan(&cols); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			q := fmt.Sprintf("SELECT count(*) FROM (SELECT %[3]s FROM %[1]s EXCEPT ALL SELECT %[3]s FROM %[2]s)", x, y, cols)
			if err := db.QueryRow(q).Scan(&n); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if n != 0 {
				t.Errorf("%s: %d rows of snapshot %s are not in %s", name, n, pair[0].m.SnapshotID, pair[1].m.SnapshotID)
			}
		}
	}
}

// TestIntegrationCompact: three tenants on S3, each with its own key. Half the stream
// is consumed and compacted, then the rest (updates and deletes of what the first
// snapshot holds included) and compacted again from the first snapshot: the marts
// equal the generator's final state exactly, and a full rebuild gives the same tables.
func TestIntegrationCompact(t *testing.T) {
	st := needStack(t)
	needDBT(t)
	// No overlap: the second run reads only the files written after the first, so the
	// rest comes from the first snapshot's state.
	r := newRun(t, st, itTenants, bucket, compactSettings+"  overlap: 0s\n")
	r.fhirlake(t, "topics", "create")
	s := r.generate(t, st, "--tenants", strings.Join(itTenants, ","), "--patients", "40", "--seed", "23",
		"--updates", "0.35", "--deletes", "0.2", "--controls", "4", "--malformed", "2", "--unroutable", "2",
		"--formats", "r4-backport,r5,r4b-history")
	// The first half in two sessions a few seconds apart: S3 dates objects to the
	// second, and the files of the first session must be older than the watermark.
	s.produce(t, s.total()/4)
	r.consumeAll(t, st)
	time.Sleep(2 * time.Second)
	s.produce(t, s.total()/2-s.sent)
	r.consumeAll(t, st)
	out := r.mustCompact(t)
	t.Logf("first compaction:\n%s", lastLines(out, 5))
	first := map[string]*lake.Manifest{}
	for _, tn := range itTenants {
		m, err := sink.ReadManifest(context.Background(), r.tenantStore(t, st, tn))
		if err != nil || m == nil || !m.FullRefresh {
			t.Fatalf("tenant %s: first snapshot %+v, %v", tn, m, err)
		}
		first[tn] = m
	}

	s.produce(t, -1)
	r.consumeAll(t, st)
	start := time.Now()
	out = r.mustCompact(t)
	t.Logf("incremental compaction of %d tenants in %s:\n%s", len(itTenants), time.Since(start).Round(time.Second), lastLines(out, 5))
	want := s.expect.state
	incremental := map[string]snapshot{}
	for _, tn := range itTenants {
		snap := currentSnapshot(t, r.tenantStore(t, st, tn))
		if snap.m.FullRefresh || snap.m.Previous != first[tn].SnapshotID || snap.m.Tenant != tn {
			t.Errorf("tenant %s: snapshot %s full=%v previous=%s, want an incremental run on %s", tn, snap.m.SnapshotID, snap.m.FullRefresh, snap.m.Previous, first[tn].SnapshotID)
		}
		// The second half's files, and those of the watermark's second again (S3 dates
		// objects to the second): not every file.
		objs, err := r.tenantStore(t, st, tn).List(context.Background(), lake.SpeedPrefix)
		if err != nil {
			t.Fatal(err)
		}
		if snap.m.SpeedFiles >= len(objs) {
			t.Errorf("tenant %s: the incremental run read %d speed files of %d: it re-read everything", tn, snap.m.SpeedFiles, len(objs))
		}
		checkMarts(t, snap, tn, want[tn])
		incremental[tn] = snap
	}

	// Nothing new: every tenant is up to date and keeps its snapshot.
	out = r.mustCompact(t)
	for _, tn := range itTenants {
		if !regexp.MustCompile(`(?m)^` + tn + `\s+up to date\s`).MatchString(out) {
			t.Errorf("a run without new files did not report %s up to date:\n%s", tn, out)
		}
	}

	r.mustCompact(t, "--full-refresh")
	for _, tn := range itTenants {
		full := currentSnapshot(t, r.tenantStore(t, st, tn))
		if !full.m.FullRefresh || full.m.SnapshotID == incremental[tn].m.SnapshotID {
			t.Errorf("tenant %s: --full-refresh published %s (full=%v)", tn, full.m.SnapshotID, full.m.FullRefresh)
		}
		sameTables(t, incremental[tn], full)
		if got := full.m.History; len(got) < 2 || got[0] != incremental[tn].m.SnapshotID {
			t.Errorf("tenant %s: history %v, want the incremental snapshot first", tn, got)
		}
	}
}

// TestIntegrationCompactFailingTestBlocksTenant: a tenant whose new data breaks a dbt
// test (an observation status outside the FHIR value set) publishes nothing and keeps
// its previous snapshot; the other tenants publish. The failing test is named, and the
// daemon's metrics show the tenant halted.
func TestIntegrationCompactFailingTestBlocksTenant(t *testing.T) {
	st := needStack(t)
	needDBT(t)
	r := newRun(t, st, itTenants, bucket, compactSettings)
	r.fhirlake(t, "topics", "create")
	s := r.generate(t, st, "--tenants", strings.Join(itTenants, ","), "--patients", "20", "--seed", "5",
		"--updates", "0.3", "--deletes", "0.1", "--malformed", "0", "--unroutable", "0")
	s.produce(t, s.total()/2)
	r.consumeAll(t, st)
	r.mustCompact(t)
	before := map[string]string{}
	for _, tn := range itTenants {
		m, _ := sink.ReadManifest(context.Background(), r.tenantStore(t, st, tn))
		before[tn] = m.SnapshotID
	}
	s.produce(t, -1)
	r.consumeAll(t, st)
	injectBadObservation(t, r.tenantStore(t, st, "globex"))

	out, code := r.compact(t)
	if code == 0 {
		t.Fatalf("compact exited 0 although globex's data breaks a test:\n%s", out)
	}
	t.Logf("compaction with globex's bad data (exit %d):\n%s", code, lastLines(out, 5))
	if !strings.Contains(out, "tenant globex: dbt build:") || !strings.Contains(out, "accepted_values_observations_status") {
		t.Errorf("the output does not name globex's failing test:\n%s", out)
	}
	for _, tn := range []string{"acme", "initech"} {
		if strings.Contains(out, "tenant "+tn+":") {
			t.Errorf("the error names %s:\n%s", tn, out)
		}
	}
	want := s.expect.state
	for _, tn := range itTenants {
		snap := currentSnapshot(t, r.tenantStore(t, st, tn))
		if tn == "globex" {
			if snap.m.SnapshotID != before[tn] {
				t.Errorf("globex: snapshot %s published, want %s kept", snap.m.SnapshotID, before[tn])
			}
			continue
		}
		if snap.m.SnapshotID == before[tn] {
			t.Errorf("tenant %s: no new snapshot", tn)
		}
		checkMarts(t, snap, tn, want[tn])
	}

	// The daemon reports the same through its metrics.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := r.cmd(ctx, "compact", "--schedule", "@every 1s", "--tenant", "globex", "--tenant", "acme")
	var logs bytes.Buffer
	d.Stdout, d.Stderr = &logs, &logs
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	var m map[string]float64
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		time.Sleep(time.Second)
		if m = compactMetrics(r.metricsAddr); m[`fhirlake_compactor_halted{tenant="globex"}`] == 1 && m[`fhirlake_compactor_last_success_timestamp_seconds{tenant="acme"}`] > 0 {
			break
		}
	}
	// It fails only when the daemon has already exited; Wait then reports how it ended.
	_ = d.Process.Signal(syscall.SIGTERM)
	if err := d.Wait(); err != nil {
		t.Errorf("daemon exit after SIGTERM: %v\n%s", err, lastLines(logs.String(), 20))
	}
	for k, want := range map[string]float64{
		`fhirlake_compactor_halted{tenant="globex"}`:       1,
		`fhirlake_compactor_halted{tenant="acme"}`:         0,
		`fhirlake_compactor_failed_tests{tenant="globex"}`: 1,
	} {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("%s: got %v (present %v), want %v", k, got, ok, want)
		}
	}
	if m[`fhirlake_compactor_last_success_timestamp_seconds{tenant="acme"}`] < float64(time.Now().Add(-10*time.Minute).Unix()) {
		t.Errorf("acme's last success is not recent: %v", m)
	}
	if got := m[`fhirlake_compactor_duration_seconds_count{tenant="globex"}`]; got < 1 {
		t.Errorf("globex's run durations: got %v observations", got)
	}
}

// injectBadObservation adds, in the tenant's speed layer, a newer version of one
// observation whose status is not a FHIR observation status: in the raw dataset and in
// the observation view, as the consumer would have written it.
func injectBadObservation(t *testing.T, store sink.Store) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	objs, err := store.List(ctx, "speed/")
	if err != nil {
		t.Fatal(err)
	}
	var date string
	for _, o := range objs {
		f, ok := lake.ParseSpeedKey(o.Key)
		if !ok || (f.Dataset != "resources" && f.Dataset != "observation") {
			continue
		}
		date = f.Date
		p := filepath.Join(dir, f.Dataset, f.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := store.Get(ctx, o.Key, &buf); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var id string
	if err := db.QueryRow(fmt.Sprintf(`SELECT _resource_id FROM read_parquet('%s/observation/*.parquet') ORDER BY _resource_id LIMIT 1`, dir)).Scan(&id); err != nil {
		t.Fatal(err)
	}
	const name = "bad.topic-0-900000000-900000000.parquet"
	for _, q := range []string{
		fmt.Sprintf(`COPY (SELECT * REPLACE (CAST(TRY_CAST(version_id AS INT) + 10 AS VARCHAR) AS version_id, 'bad.topic' AS topic, 0 AS "partition",
			900000000 AS "offset", replace(resource, '"status":"', '"status":"not-a-') AS resource)
			FROM read_parquet('%[1]s/resources/*.parquet') WHERE id = '%[2]s' AND operation = 'upsert'
			ORDER BY TRY_CAST(version_id AS INT) DESC LIMIT 1) TO '%[1]s/%[3]s.resources' (FORMAT parquet)`, dir, id, name),
		fmt.Sprintf(`COPY (SELECT * REPLACE (CAST(TRY_CAST(_version_id AS INT) + 10 AS VARCHAR) AS _version_id, 'bad.topic' AS _topic, 0 AS _partition,
			900000000 AS _offset, 'not-a-status' AS status)
			FROM read_parquet('%[1]s/observation/*.parquet') WHERE _resource_id = '%[2]s'
			ORDER BY TRY_CAST(_version_id AS INT) DESC LIMIT 1) TO '%[1]s/%[3]s.observation' (FORMAT parquet)`, dir, id, name),
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	for _, ds := range []string{"resources", "observation"} {
		if err := store.Put(ctx, "speed/"+ds+"/date="+date+"/"+name, filepath.Join(dir, name+"."+ds)); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("injected a version of Observation/%s with an invalid status", id)
}

// compactMetrics scrapes a metrics endpoint, keyed by name{labels}; empty on error.
func compactMetrics(addr string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return out
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := name + "{" + strings.Join(labels, ",") + "}"
			if h := m.GetHistogram(); h != nil {
				out[strings.Replace(key, name, name+"_count", 1)] = float64(h.GetSampleCount())
				continue
			}
			out[key] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return out
}

// TestIntegrationCompactKilled: a tenant on the local store. `fhirlake compact` is
// SIGKILLed while dbt runs: dbt dies with it, the previous snapshot stays current and
// readable, its lease stays until it expires, and the next run (waiting for the lease)
// publishes. dbt's standalone build and `dbt docs generate`
// work on the same lake.
func TestIntegrationCompactKilled(t *testing.T) {
	st := needStack(t)
	needDBT(t)
	r := newRun(t, st, []string{"acme"}, bucket, compactSettings)
	lake := filepath.Join(r.dir, "lake", "acme")
	r.config = filepath.Join(r.dir, "local.yaml")
	conf := fmt.Sprintf("kafka:\n  brokers: [%q]\n  topics: [%q]\n  group: %q\n  dead_letter_topic: %q\n  partitions: 6\n"+
		"flush:\n  max_age: 1s\nmetrics:\n  listen: %q\nwork_dir: %q\n%stenants:\n  - name: acme\n    store:\n      type: local\n      path: %q\n",
		strings.Join(st.brokers, ","), r.topic, r.group, r.dlq, r.metricsAddr, filepath.Join(r.dir, "work"), compactSettings+"  lease_ttl: 5s\n", lake)
	if err := os.WriteFile(r.config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	r.fhirlake(t, "topics", "create")
	s := r.generate(t, st, "--tenants", "acme", "--patients", "60", "--seed", "3", "--updates", "0.3", "--deletes", "0.2")
	s.produce(t, s.total()/2)
	r.consumeAll(t, st)
	r.mustCompact(t)
	store, err := sink.NewLocal(lake)
	if err != nil {
		t.Fatal(err)
	}
	first := currentSnapshot(t, store)

	s.produce(t, -1)
	r.consumeAll(t, st)
	c := r.cmd(context.Background(), "compact")
	var logs bytes.Buffer
	c.Stdout, c.Stderr = &logs, &logs
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	runs := filepath.Join(r.dir, "work", "compact", "acme")
	deadline := time.Now().Add(3 * time.Minute)
	building := ""
	for building == "" && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		matches, _ := filepath.Glob(filepath.Join(runs, "*", "logs", "dbt.log"))
		for _, p := range matches {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("START sql")) {
				building = filepath.Dir(filepath.Dir(p))
			}
		}
	}
	if building == "" {
		// The test fails either way; this only stops the process, whose exit
		// status then says only that it was killed.
		_ = c.Process.Kill()
		_ = c.Wait()
		t.Fatalf("dbt never started building:\n%s", logs.String())
	}
	if err := c.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = c.Wait() // killed: its exit status says only that
	t.Logf("killed fhirlake compact while dbt built %s", filepath.Base(building))
	// dbt dies with it: no process still works in the run's directory.
	for end := time.Now().Add(15 * time.Second); ; {
		left := processesIn(building)
		if len(left) == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("processes still running in %s after the compactor was killed: %v", building, left)
		}
		time.Sleep(200 * time.Millisecond)
	}

	after := currentSnapshot(t, store)
	if after.m.SnapshotID != first.m.SnapshotID {
		t.Fatalf("the manifest moved to %s although the run was killed", after.m.SnapshotID)
	}
	var n int
	if err := first.db(t).QueryRow("SELECT count(*) FROM patients").Scan(&n); err != nil || n == 0 {
		t.Errorf("the previous snapshot is not readable: %d rows, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(lake, "batch", filepath.Base(building))); !os.IsNotExist(err) {
		t.Errorf("the killed run left files under batch/: %v", err)
	}

	if l := readLeaseOf(t, store); l == nil || l.Holder.PID != c.Process.Pid {
		t.Errorf("the killed run's lease: %+v, want it left, naming pid %d", l, c.Process.Pid)
	}
	r.mustCompact(t, "--wait-lease", "5m")
	if l := readLeaseOf(t, store); l != nil {
		t.Errorf("the lease after the next run: %+v, want it released", l)
	}
	next := currentSnapshot(t, store)
	if next.m.SnapshotID == first.m.SnapshotID || next.m.Previous != first.m.SnapshotID {
		t.Errorf("after the kill: snapshot %s on %s, want a new one on %s", next.m.SnapshotID, next.m.Previous, first.m.SnapshotID)
	}
	checkMarts(t, next, "acme", s.expect.state["acme"])
	if _, err := os.Stat(building); !os.IsNotExist(err) {
		t.Errorf("the killed run's directory is still there: %v", err)
	}

	dbtDocs(t, lake)
}

// processesIn lists the processes whose command line mentions dir.
func processesIn(dir string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(dir)) {
			out = append(out, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// dbtDocs builds the project by hand on a local lake (tables in a DuckDB file, no
// compactor) and generates its documentation.
func dbtDocs(t *testing.T, lake string) {
	t.Helper()
	dir := t.TempDir()
	vars, _ := json.Marshal(map[string]string{"lake": lake})
	for _, cmd := range []string{"build", "docs generate"} {
		args := append(strings.Fields(cmd), "--profiles-dir", ".", "--target", "local", "--target-path", filepath.Join(dir, "target"),
			"--log-path", filepath.Join(dir, "logs"), "--vars", string(vars))
		c := exec.Command(os.Getenv("FHIRLAKE_DBT"), args...)
		c.Dir = filepath.Join(testenv.RepoRoot(), "dbt")
		c.Env = append(os.Environ(), "FHIRLAKE_DBT_DATABASE="+filepath.Join(dir, "docs.duckdb"), "DO_NOT_TRACK=1")
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("dbt %s: %v\n%s", cmd, err, lastLines(string(out), 30))
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "target", "catalog.json"))
	if err != nil {
		t.Fatal(err)
	}
	var catalog struct {
		Nodes map[string]any `json:"nodes"`
	}
	if err := json.Unmarshal(b, &catalog); err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"model.fhirlake.patients", "model.fhirlake.encounter_summary", "model.fhirlake.procedures"} {
		if _, ok := catalog.Nodes[node]; !ok {
			t.Errorf("dbt docs: the catalog lacks %s", node)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "target", "index.html")); err != nil {
		t.Errorf("dbt docs: %v", err)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestIntegrationCompactBenchmark measures `fhirlake compact` on one tenant of
// FHIRLAKE_BENCH_COMPACT_PATIENTS patients (about 18 resources each; 280,000 make
// 5 M): a full rebuild, then, after 1 % of the resources changed, an incremental run.
// It reports both times, their ratio against the target (the incremental run within
// 15 % of the full rebuild) and the peak resident memory of each run's process tree
// (the compactor, dbt and its DuckDB) against compact.memory_limit
// (FHIRLAKE_BENCH_COMPACT_MEMORY_LIMIT, default 4GiB). The lake is made once and kept
// in .cache/bench-compact/p<patients>; each run compacts a copy. Figures, never
// assertions on time. Run by `make bench-compact`; it needs the dbt virtualenv only.
func TestIntegrationCompactBenchmark(t *testing.T) {
	patients := os.Getenv("FHIRLAKE_BENCH_COMPACT_PATIENTS")
	if patients == "" {
		t.Skip("set FHIRLAKE_BENCH_COMPACT_PATIENTS (make bench-compact)")
	}
	n, err := strconv.Atoi(patients)
	if err != nil || n < 1 {
		t.Fatalf("FHIRLAKE_BENCH_COMPACT_PATIENTS=%q: want a number of patients", patients)
	}
	memoryLimit := config.ByteSize(4 << 30)
	if s := os.Getenv("FHIRLAKE_BENCH_COMPACT_MEMORY_LIMIT"); s != "" {
		if err := memoryLimit.UnmarshalText([]byte(s)); err != nil || memoryLimit == 0 {
			t.Fatalf("FHIRLAKE_BENCH_COMPACT_MEMORY_LIMIT=%q: want a size such as 4GiB", s)
		}
	}
	dbt := compactor.FindDBT()
	if dbt == "" {
		t.Fatal(compactor.ErrNoDBT)
	}
	b := newCompactBench(t, filepath.Join(testenv.RepoRoot(), ".cache", "bench-compact", "p"+patients), patients, dbt, memoryLimit)
	speedRows := b.speedRows(t)

	full := b.compact(t, "--full-refresh")
	resources := full.m.Models["int_resources__latest"].Rows
	var tableRows int64
	for _, mod := range full.m.Models {
		tableRows += mod.Rows
	}
	t.Logf("full rebuild: %d speed files (%d rows) → %d resources, %d rows in %d tables, in %s (dbt %.1fs): %.0f speed rows/s",
		full.m.SpeedFiles, speedRows, resources, tableRows, len(full.m.Models), full.took.Round(100*time.Millisecond),
		full.m.DBT.ElapsedSeconds, float64(speedRows)/full.took.Seconds())

	ch := b.change(t, full.m, 0.01)
	changed := ch.upserts + ch.deletes
	t.Logf("changed %d resources (%.2f %%): %d new versions, %d deletes, in %d files loaded by fhirlake backfill in %s",
		changed, 100*float64(changed)/float64(resources), ch.upserts, ch.deletes, ch.files, ch.took.Round(100*time.Millisecond))

	inc := b.compact(t)
	t.Logf("incremental run: %d speed files on snapshot %s → %d resources in %s (dbt %.1fs)",
		inc.m.SpeedFiles, full.m.SnapshotID, inc.m.Models["int_resources__latest"].Rows, inc.took.Round(100*time.Millisecond), inc.m.DBT.ElapsedSeconds)
	if inc.m.FullRefresh || inc.m.Previous != full.m.SnapshotID || inc.m.Models["int_resources__latest"].Rows != resources {
		t.Errorf("incremental run: full=%v previous=%s resources=%d, want an incremental run on %s keeping %d resources",
			inc.m.FullRefresh, inc.m.Previous, inc.m.Models["int_resources__latest"].Rows, full.m.SnapshotID, resources)
	}
	ch.check(t, b, inc.m)

	// The next night's run: another 1 % changed, on the incremental snapshot, with the
	// parse dbt kept from the first incremental run (compactor/parsecache.go), as every
	// incremental run but the first after a rebuild has it.
	ch2 := b.change(t, inc.m, 0.01)
	next := b.compact(t)
	if next.m.FullRefresh || next.m.Previous != inc.m.SnapshotID || !next.m.Models["int_resources__latest"].Merged() {
		t.Errorf("next incremental run: full=%v previous=%s, want an incremental run on %s", next.m.FullRefresh, next.m.Previous, inc.m.SnapshotID)
	}
	ch2.check(t, b, next.m)

	ratio, nextRatio := inc.took.Seconds()/full.took.Seconds(), next.took.Seconds()/full.took.Seconds()
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	peak := max(full.peak, inc.peak, next.peak)
	t.Logf("compaction benchmark, %d patients, %d resources, %d changed (%.2f %%), then %d, compact.memory_limit %s, 2 threads:\n"+
		"  full rebuild        %8.1f s  peak RSS ≤ %s (≥ %s seen at once; largest process %s)\n"+
		"  incremental, first  %8.1f s  peak RSS ≤ %s (≥ %s seen at once; largest process %s); dbt's parse %s\n"+
		"  incremental, next   %8.1f s  peak RSS ≤ %s (≥ %s seen at once; largest process %s); dbt's parse %s\n"+
		"  incremental/full    %7.1f %% (first), %.1f %% (next)  target ≤ 15 %%: %s, %s\n"+
		"  memory              peak ≤ %s of %s: %s",
		n, resources, changed, 100*float64(changed)/float64(resources), ch2.upserts+ch2.deletes, memoryLimit,
		full.took.Seconds(), gib(full.peak), gib(full.together), gib(full.largest),
		inc.took.Seconds(), gib(inc.peak), gib(inc.together), gib(inc.largest), inc.parse,
		next.took.Seconds(), gib(next.peak), gib(next.together), gib(next.largest), next.parse,
		100*ratio, 100*nextRatio, verdict(ratio <= 0.15), verdict(nextRatio <= 0.15),
		gib(peak), gib(int64(memoryLimit)), verdict(peak <= int64(memoryLimit)))
}
