package compactor

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fhirlake/lake"
	"fhirlake/sink"
)

// These tests run the real dbt project over a small lake written here, row by row, to
// pin the batch layer's rules on the cases that matter: versions arriving out of
// order, an older version arriving after a delete, replayed files, datasets and
// columns that are absent, nested extensions and code-system spellings. They need the
// dbt virtualenv: they run when FHIRLAKE_DBT is set (`make test`, or
// eval "$(deploy/local/stack env)").

// The tests that build the dbt project run in parallel (t.Parallel): a
// build is mostly dbt's Python on one core, some 200 nodes at 0.3 s each
// on a slow 2-core machine, so two builds at once use both cores and
// halve the package's time.
func needDBTRunner(t *testing.T) *DBT {
	t.Helper()
	path := os.Getenv("FHIRLAKE_DBT")
	if path == "" || testing.Short() {
		t.Skip("FHIRLAKE_DBT is not set: the dbt project is tested with the local stack's virtualenv")
	}
	d, err := NewDBT(DBT{Path: path, Threads: 2, MemoryLimit: "1GB"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

const (
	raceURL     = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
	birthSexURL = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"
)

// change is one stored change of a resource: a row of speed/resources, and the rows
// of its views.
type change struct {
	typ, id, version, op string
	partition            int
	offset               int64
	resource             string
}

// lakeWriter writes speed files into a tenant's store through DuckDB.
type lakeWriter struct {
	t     *testing.T
	db    *sql.DB
	store sink.Store
	dir   string
}

func newLakeWriter(t *testing.T, store sink.Store) *lakeWriter {
	t.Helper()
	db, err := openDuckDB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &lakeWriter{t: t, db: db, store: store, dir: t.TempDir()}
}

// write stores the rows of query as speed/<dataset>/date=2026-11-25/<name>.parquet.
func (w *lakeWriter) write(dataset, name, query string) {
	w.t.Helper()
	p := filepath.Join(w.dir, dataset+"-"+name+".parquet")
	if _, err := w.db.Exec(fmt.Sprintf("COPY (%s) TO %s (FORMAT parquet)", query, sqlString(p))); err != nil {
		w.t.Fatalf("%s %s: %v", dataset, name, err)
	}
	if err := w.store.Put(context.Background(), speedKey(dataset, "2026-11-25", name), p); err != nil {
		w.t.Fatal(err)
	}
}

func (w *lakeWriter) resources(name string, cs ...change) {
	w.t.Helper()
	var rows []string
	for _, c := range cs {
		res := "NULL"
		if c.resource != "" {
			res = sqlString(c.resource)
		}
		rows = append(rows, fmt.Sprintf("('t1', '%s', '%s', '%s', TIMESTAMPTZ '2025-01-06 08:00:00+00' + INTERVAL (%s) SECOND, '%s', 'n', %d, %d, TIMESTAMPTZ '2026-11-25 08:00:00+00' + INTERVAL (%d) SECOND, %s)",
			c.typ, c.id, c.version, c.version, c.op, c.partition, c.offset, c.offset, res))
	}
	w.write("resources", name, `SELECT * FROM (VALUES `+strings.Join(rows, ", ")+`) AS v(tenant, resource_type, id, version_id, last_updated, operation, topic, "partition", "offset", ingest_time, resource)`)
}

// view writes rows of a view: each row is the change it comes from, its row number,
// and the view's own column values (SQL literals) in the order of cols.
func (w *lakeWriter) view(dataset, name, cols string, rows ...viewRow) {
	w.t.Helper()
	var vals []string
	for _, r := range rows {
		vals = append(vals, fmt.Sprintf("('t1', '%s', '%s', '%s', TIMESTAMPTZ '2025-01-06 08:00:00+00' + INTERVAL (%s) SECOND, 'n', %d, %d, TIMESTAMPTZ '2026-11-25 08:00:00+00' + INTERVAL (%d) SECOND, %d, %s)",
			r.c.typ, r.c.id, r.c.version, r.c.version, r.c.partition, r.c.offset, r.c.offset, r.row, r.values))
	}
	lineage := strings.Join(lake.ViewLineageNames(), ", ")
	w.write(dataset, name, fmt.Sprintf("SELECT * FROM (VALUES %s) AS v(%s, %s)", strings.Join(vals, ", "), lineage, cols))
}

type viewRow struct {
	c      change
	row    int
	values string
}

func patientJSON(id, version, gender string, ext bool) string {
	e := ""
	if ext {
		e = `,"extension":[{"url":"` + raceURL + `","extension":[` +
			`{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2106-3","display":"White"}},` +
			`{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2028-9","display":"Asian"}},` +
			`{"url":"text","valueString":"Two or more races"}]},{"url":"` + birthSexURL + `","valueCode":"F"}]`
	}
	return `{"resourceType":"Patient","id":"` + id + `","meta":{"versionId":"` + version + `"}` + e + `,"gender":"` + gender + `"}`
}

func TestDBTProjectOnAHandmadeLake(t *testing.T) {
	t.Parallel() // see needDBTRunner
	runner := needDBTRunner(t)
	ctx := context.Background()
	ten, store := newTenant(t, "t1")
	w := newLakeWriter(t, store)

	// First delivery. o2's newest version arrives before its older one; o1 is created
	// and deleted; the patient view lacks the US Core columns (birth_sex, race_*),
	// which must then come from the resource's extensions.
	p1v1 := change{"Patient", "p1", "1", "upsert", 0, 0, patientJSON("p1", "1", "female", true)}
	p2v1 := change{"Patient", "p2", "1", "upsert", 0, 1, patientJSON("p2", "1", "male", false)}
	o1v1 := change{"Observation", "o1", "1", "upsert", 0, 2, `{"resourceType":"Observation","id":"o1","status":"final"}`}
	o1v2 := change{"Observation", "o1", "2", "delete", 0, 3, ""}
	o2v3 := change{"Observation", "o2", "3", "upsert", 0, 4, `{"resourceType":"Observation","id":"o2","status":"amended"}`}
	o3v1 := change{"Observation", "o3", "1", "upsert", 0, 5, `{"resourceType":"Observation","id":"o3","status":"final"}`}
	o5v1 := change{"Observation", "o5", "1", "upsert", 0, 6, `{"resourceType":"Observation","id":"o5","status":"final"}`}
	e1v1 := change{"Encounter", "e1", "1", "upsert", 0, 7, `{"resourceType":"Encounter","id":"e1","status":"finished"}`}
	w.resources("n-0-0-7", p1v1, p2v1, o1v1, o1v2, o2v3, o3v1, o5v1, e1v1)
	w.view("patient", "n-0-0-7", "id, gender, birth_date",
		viewRow{p1v1, 0, "'p1', 'female', DATE '1970-02-01'"},
		viewRow{p2v1, 0, "'p2', 'male', DATE '1980-03-04'"})
	const obsCols = "id, status, category, patient_id, encounter_id, effective, value_quantity, value_unit, code, code_system, code_display"
	w.view("observation", "n-0-0-7", obsCols,
		viewRow{o1v1, 0, "'o1', 'final', 'vital-signs', 'p1', 'e1', TIMESTAMPTZ '2024-01-01 10:00:00+00', 60.0, 'kg', '29463-7', 'http://loinc.org', 'Body weight'"},
		viewRow{o2v3, 0, "'o2', 'amended', 'vital-signs', 'p1', 'e1', TIMESTAMPTZ '2024-01-01 10:05:00+00', 61.5, 'kg', '29463-7', 'http://loinc.org/', 'Body weight'"},
		viewRow{o3v1, 0, "'o3', 'final', 'vital-signs', 'p1', 'e1', TIMESTAMPTZ '2024-01-01 10:10:00+00', 70, '/min', '8867-4', 'urn:oid:2.16.840.1.113883.6.1', 'Heart rate'"},
		viewRow{o5v1, 0, "'o5', 'final', 'vital-signs', 'p2', NULL, TIMESTAMPTZ '2024-02-01 09:00:00+00', NULL, NULL, '85354-9', 'HTTP://LOINC.ORG', 'Blood pressure panel'"})
	w.view("observation_component", "n-0-0-7", "id, patient_id, component_index, value_quantity, value_unit, code, code_system",
		viewRow{o5v1, 0, "'o5', 'p2', 0, 120, 'mm[Hg]', '8480-6', 'http://loinc.org'"},
		viewRow{o5v1, 1, "'o5', 'p2', 1, 80, 'mm[Hg]', '8462-4', 'http://loinc.org'"})
	w.view("encounter", "n-0-0-7", "id, status, class_code, class_system, patient_id, start, type_code, type_system",
		viewRow{e1v1, 0, "'e1', 'finished', 'AMB', 'http://terminology.hl7.org/CodeSystem/v3-ActCode', 'p1', TIMESTAMPTZ '2024-01-01 09:30:00+00', '185349003', 'http://snomed.info/sct'"})

	c := newTestCompactorWith(t, runner)
	first, err := c.Compact(ctx, ten)
	if err != nil {
		t.Fatal(err)
	}
	check := func(res *Result, marts map[string]string) {
		t.Helper()
		for q, want := range marts {
			if got := queryOne(t, store.Root, res.SnapshotID, q); got != want {
				t.Errorf("snapshot %s: %s\n got  %s\n want %s", res.SnapshotID, q, got, want)
			}
		}
	}
	common := map[string]string{
		"SELECT string_agg(patient_id || ' ' || version_id || ' ' || coalesce(birth_sex, '-') || ' ' || race_codes::VARCHAR || ' ' || coalesce(race_text, '-'), '; ' ORDER BY patient_id) FROM patients":                                                                             "p1 %s F [2106-3, 2028-9] Two or more races; p2 1 - [] -",
		"SELECT string_agg(observation_id || ' ' || version_id || ' ' || status, '; ' ORDER BY observation_id) FROM observations":                                                                                                                                                    "o2 3 amended; o3 1 final; o5 1 final",
		"SELECT string_agg(DISTINCT code_system || ' ' || code_system_name, '; ') FROM observations":                                                                                                                                                                                 "http://loinc.org loinc",
		"SELECT string_agg(resource_id || ' ' || version_id, '; ' ORDER BY resource_id) FROM int_resources__latest WHERE is_deleted":                                                                                                                                                 "o1 2",
		"SELECT components::VARCHAR FROM observations WHERE observation_id = 'o5'":                                                                                                                                                                                                   "[{'component_index': 0, 'code': 8480-6, 'code_system': 'http://loinc.org', 'code_system_name': loinc, 'code_display': NULL, 'value_quantity': 120.0, 'value_unit': 'mm[Hg]', 'value_unit_code': NULL, 'value_string': NULL, 'value_code': NULL, 'value_display': NULL}, {'component_index': 1, 'code': 8462-4, 'code_system': 'http://loinc.org', 'code_system_name': loinc, 'code_display': NULL, 'value_quantity': 80.0, 'value_unit': 'mm[Hg]', 'value_unit_code': NULL, 'value_string': NULL, 'value_code': NULL, 'value_display': NULL}]",
		"SELECT string_agg(patient_id || ' ' || coalesce(body_weight::VARCHAR, '-') || ' ' || coalesce(heart_rate::VARCHAR, '-') || ' ' || coalesce(systolic_bp::VARCHAR, '-') || '/' || coalesce(diastolic_bp::VARCHAR, '-'), '; ' ORDER BY patient_id) FROM patient_latest_vitals": "p1 61.5 70.0 -/-; p2 - - 120.0/80.0",
		"SELECT encounter_id || ' ' || observation_count || ' ' || s.type_system_name || ' ' || e.class_system FROM encounter_summary s JOIN encounters e USING (encounter_id)":                                                                                                      "e1 2 snomed http://terminology.hl7.org/CodeSystem/v3-ActCode",
		"SELECT (SELECT count(*) FROM procedures) + (SELECT count(*) FROM immunizations) + (SELECT count(*) FROM allergies) + (SELECT count(*) FROM conditions)":                                                                                                                     "0",
	}
	firstMarts := map[string]string{}
	for q, v := range common {
		firstMarts[q] = strings.Replace(v, "%s", "1", 1)
	}
	check(first, firstMarts)

	// Second delivery, on another partition: an older version of the deleted o1
	// arrives late (it must not come back), and so does an older version of o2 (it
	// must not replace version 3); p1 gets version 2; and a replay re-delivers o3's
	// range as a file of its own (one copy must remain).
	o1late := change{"Observation", "o1", "1", "upsert", 1, 0, `{"resourceType":"Observation","id":"o1","status":"final"}`}
	o2v2 := change{"Observation", "o2", "2", "upsert", 1, 1, `{"resourceType":"Observation","id":"o2","status":"final"}`}
	p1v2 := change{"Patient", "p1", "2", "upsert", 1, 2, patientJSON("p1", "2", "female", true)}
	w.resources("n-1-0-2", o1late, o2v2, p1v2)
	w.view("observation", "n-1-0-2", obsCols,
		viewRow{o1late, 0, "'o1', 'final', 'vital-signs', 'p1', 'e1', TIMESTAMPTZ '2024-01-01 10:00:00+00', 60.0, 'kg', '29463-7', 'http://loinc.org', 'Body weight'"},
		viewRow{o2v2, 0, "'o2', 'final', 'vital-signs', 'p1', 'e1', TIMESTAMPTZ '2024-01-01 10:05:00+00', 61.0, 'kg', '29463-7', 'http://loinc.org', 'Body weight'"})
	w.view("patient", "n-1-0-2", "id, gender, birth_date",
		viewRow{p1v2, 0, "'p1', 'female', DATE '1970-02-01'"})
	w.resources("n-0-5-5", o3v1)
	w.view("observation", "n-0-5-5", obsCols,
		viewRow{o3v1, 0, "'o3', 'final', 'vital-signs', 'p1', 'e1', TIMESTAMPTZ '2024-01-01 10:10:00+00', 70, '/min', '8867-4', 'urn:oid:2.16.840.1.113883.6.1', 'Heart rate'"})

	second, err := c.Compact(ctx, ten)
	if err != nil {
		t.Fatal(err)
	}
	if second.FullRefresh || second.SpeedFiles >= 9 {
		t.Errorf("second run: full=%v, %d speed files: want an incremental run over the new files", second.FullRefresh, second.SpeedFiles)
	}
	final := map[string]string{}
	for q, v := range common {
		final[q] = strings.Replace(v, "%s", "2", 1)
	}
	check(second, final)

	c.opts.FullRefresh = true
	full, err := c.Compact(ctx, ten)
	if err != nil {
		t.Fatal(err)
	}
	check(full, final)
	for model := range full.Models {
		if d := diffParquet(t, store.Root, second.SnapshotID, full.SnapshotID, model); d != 0 {
			t.Errorf("%s: %d rows differ between the incremental snapshot and the full rebuild", model, d)
		}
	}

	// The demo's entry point over the same lake, after one more encounter: an
	// incremental run, whose encounter_summary holds e2 in its delta only.
	e2v1 := change{"Encounter", "e2", "1", "upsert", 2, 0, `{"resourceType":"Encounter","id":"e2","status":"finished"}`}
	w.resources("n-2-0-0", e2v1)
	w.view("encounter", "n-2-0-0", "id, status, class_code, class_system, patient_id, start, type_code, type_system",
		viewRow{e2v1, 0, "'e2', 'finished', 'AMB', 'http://terminology.hl7.org/CodeSystem/v3-ActCode', 'p1', TIMESTAMPTZ '2024-01-02 09:30:00+00', '185349003', 'http://snomed.info/sct'"})
	table, results, err := CompactLocalLake(ctx, filepath.Dir(store.Root), t.TempDir(), []string{"t1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || !results[0].Models["encounter_summary"].Merged() {
		t.Errorf("demo: encounter_summary not merged on read: %+v", results)
	}
	if len(table.Rows) != 1 || table.Rows[0][0] != "(none)" || table.Rows[0][1] != "2" {
		t.Errorf("demo table: %+v", table)
	}
}

func newTestCompactorWith(t *testing.T, r Runner) *Compactor {
	t.Helper()
	return newTestCompactor(t, r, nil, func(o *Options) {
		o.Overlap = 0
		o.Timeout = 10 * time.Minute
	})
}

// queryOne runs q over a snapshot's tables (local store), each a view named for its
// model as a reader sees it (a state model merged: modelSQL), and returns its one
// value.
func queryOne(t *testing.T, root, snapshot, q string) string {
	t.Helper()
	db, err := openDuckDB()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m := snapshotManifest(t, root, snapshot)
	for _, name := range m.ModelNames() {
		if _, err := db.Exec(fmt.Sprintf("CREATE VIEW %s AS SELECT * FROM %s", name, modelSQL(t, root, m, name))); err != nil {
			t.Fatal(err)
		}
	}
	var v sql.NullString
	if err := db.QueryRow(q).Scan(&v); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v.String
}

// snapshotManifest reads the manifest kept with a snapshot (local store).
func snapshotManifest(t *testing.T, root, snapshot string) *lake.Manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(lake.SnapshotManifestKey(snapshot))))
	if err != nil {
		t.Fatal(err)
	}
	m, err := lake.DecodeManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// modelSQL is a model of m as a relation, as readers read it: a model merged on read,
// its base without its changed keys and its delta (lake.Manifest.ModelSQL).
func modelSQL(t *testing.T, root string, m *lake.Manifest, model string) string {
	t.Helper()
	sql, err := m.ModelSQL(root, model)
	if err != nil {
		t.Fatal(err)
	}
	return sql
}

// diffParquet counts the rows that differ between a model of two snapshots (local
// store), each read as a reader reads it (modelSQL).
func diffParquet(t *testing.T, root, a, b, model string) int {
	t.Helper()
	db, err := openDuckDB()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pa := modelSQL(t, root, snapshotManifest(t, root, a), model)
	pb := modelSQL(t, root, snapshotManifest(t, root, b), model)
	// The columns by name: a merged state holds the base's order, a rebuilt one its own.
	rows, err := db.Query("SELECT column_name FROM (DESCRIBE SELECT * FROM " + pa + ") ORDER BY column_name")
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, `"`+c+`"`)
	}
	rows.Close()
	sel := strings.Join(cols, ", ")
	var n int
	q := fmt.Sprintf("SELECT (SELECT count(*) FROM (SELECT %[3]s FROM %[1]s EXCEPT ALL SELECT %[3]s FROM %[2]s)) + (SELECT count(*) FROM (SELECT %[3]s FROM %[2]s EXCEPT ALL SELECT %[3]s FROM %[1]s))", pa, pb, sel)
	if err := db.QueryRow(q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
