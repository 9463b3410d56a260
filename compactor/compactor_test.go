package compactor

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"fhirlake/lake"
	"fhirlake/sink"
)

// fakeRunner stands in for dbt: it records the request and writes the exported
// tables a real run would, or fails as told.
type fakeRunner struct {
	mu       sync.Mutex
	requests []BuildRequest
	plans    [][]string // the plan of each request, read while it ran
	// fail returns the results of a run of tenant; nil results mean success.
	fail func(tenant string) ([]NodeResult, error)
	// block, when set, holds the run until ctx ends.
	block   bool
	running atomic.Int32
	maxRun  atomic.Int32
	project string
}

func (f *fakeRunner) Project() string {
	if f.project == "" {
		return "fake-project"
	}
	return f.project
}

func (f *fakeRunner) Build(ctx context.Context, req BuildRequest) (*RunResults, error) {
	n := f.running.Add(1)
	defer f.running.Add(-1)
	for {
		m := f.maxRun.Load()
		if n <= m || f.maxRun.CompareAndSwap(m, n) {
			break
		}
	}
	plan, err := readPlanFile(req.Vars["plan_file"].(string))
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.plans = append(f.plans, plan)
	f.mu.Unlock()
	if f.block {
		<-ctx.Done()
		return nil, fmt.Errorf("dbt build: %w", ctx.Err())
	}
	time.Sleep(20 * time.Millisecond) // let parallel runs overlap
	res := &RunResults{Elapsed: 1.5}
	res.Metadata.DBTVersion = "1.12.0"
	if f.fail != nil {
		failed, err := f.fail(req.Tenant)
		if err != nil {
			return nil, err
		}
		if failed != nil {
			res.Results = failed
			return res, nil
		}
	}
	dir := req.Vars["export_dir"].(string)
	tables := map[string]int{"int_resources__latest": 5, "patients": 3, "observations": 0}
	if req.Vars["state_mode"] == "incremental" {
		// The state's delta and changed keys instead of a new base.
		delete(tables, "int_resources__latest")
		tables["int_resources__delta"], tables["int_state__changed"] = 2, 2
	}
	for model, rows := range tables {
		if err := writeParquet(filepath.Join(dir, model+".parquet"), rows); err != nil {
			return nil, err
		}
		res.Results = append(res.Results, NodeResult{UniqueID: "model.fhirlake." + model, Status: "success"})
	}
	res.Results = append(res.Results, NodeResult{UniqueID: "test.fhirlake.unique_patients_patient_id.abc", Status: "pass"})
	return res, nil
}

func (f *fakeRunner) last(t *testing.T) BuildRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		t.Fatal("dbt never ran")
	}
	return f.requests[len(f.requests)-1]
}

// value reads a gauge.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetGauge().GetValue()
}

// histogramCount sums the observations of a histogram family.
func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, f := range fams {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}

func writeParquet(path string, rows int) error {
	db, err := openDuckDB()
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.Exec(fmt.Sprintf("COPY (SELECT range AS id, 'x' || range AS v FROM range(%d)) TO %s (FORMAT parquet)", rows, sqlString(path)))
	return err
}

// recordingStore is a local store that records every Put and fails the ones told to.
type recordingStore struct {
	*sink.Local
	mu      sync.Mutex
	puts    []string
	failPut func(key string) error
}

func (s *recordingStore) Put(ctx context.Context, key, local string) error {
	if s.failPut != nil {
		if err := s.failPut(key); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.puts = append(s.puts, key)
	s.mu.Unlock()
	return s.Local.Put(ctx, key, local)
}

func (s *recordingStore) putKeys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.puts...)
}

func newTenant(t *testing.T, name string) (Tenant, *recordingStore) {
	t.Helper()
	l, err := sink.NewLocal(filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	s := &recordingStore{Local: l}
	return Tenant{Name: name, Store: s, Lake: l.Root}, s
}

// addSpeed writes speed files of a dataset: one per name.
func addSpeed(t *testing.T, s sink.Store, dataset string, names ...string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "f.parquet")
	if err := os.WriteFile(src, []byte("PAR1"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := s.Put(context.Background(), speedKey(dataset, "2026-11-25", n), src); err != nil {
			t.Fatal(err)
		}
	}
}

func newTestCompactor(t *testing.T, r Runner, reg prometheus.Registerer, mutate func(*Options)) *Compactor {
	t.Helper()
	o := DefaultOptions()
	o.WorkDir = t.TempDir()
	o.ConsistencyDelay = 0
	if mutate != nil {
		mutate(&o)
	}
	c, err := New(r, o, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// lastPlan is the plan of the last run, as dataset/date/file lines.
func (f *fakeRunner) lastPlan() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.plans[len(f.plans)-1]
}

func readPlanFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 || strings.Join(recs[0], ",") != "dataset,date,file" {
		return nil, fmt.Errorf("plan %s: no header", path)
	}
	var out []string
	for _, r := range recs[1:] {
		out = append(out, strings.Join(r, "/"))
	}
	return out, nil
}

func TestCompactPublishesManifestLast(t *testing.T) {
	ctx := context.Background()
	ten, store := newTenant(t, "acme")
	addSpeed(t, store, "resources", "t-0-0-9", "t-1-0-4")
	addSpeed(t, store, "patient", "t-0-0-9")
	r := &fakeRunner{}
	reg := prometheus.NewRegistry()
	c := newTestCompactor(t, r, reg, nil)
	before := len(store.putKeys())

	res, err := c.Compact(ctx, ten)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Published || !res.FullRefresh || res.Reason != "no snapshot yet" || res.SpeedFiles != 3 {
		t.Errorf("result: %+v", res)
	}
	req := r.last(t)
	if req.Target != "local" || req.Vars["lake"] != ten.Lake || fmt.Sprint(req.Vars["previous_state"]) != "map[]" || req.Vars["state_mode"] != "rebuild" || req.Vars["snapshot_id"] != res.SnapshotID {
		t.Errorf("dbt request: target %s vars %v", req.Target, req.Vars)
	}
	if got := fmt.Sprint(req.Vars["speed_partitions"]); got != "map[patient:[2026-11-25] resources:[2026-11-25]]" {
		t.Errorf("speed_partitions: got %s", got)
	}
	if got, want := r.lastPlan(), []string{
		"patient/2026-11-25/t-0-0-9.parquet", "resources/2026-11-25/t-0-0-9.parquet", "resources/2026-11-25/t-1-0-4.parquet",
	}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("plan: got %v, want %v", got, want)
	}

	puts := store.putKeys()[before:]
	if len(puts) != 5 {
		t.Fatalf("puts: got %v, want 3 tables, the snapshot's manifest and the manifest", puts)
	}
	if puts[len(puts)-1] != lake.ManifestKey {
		t.Errorf("the manifest was not written last: %v", puts)
	}
	prefix := "batch/" + res.SnapshotID + "/"
	for _, k := range puts[:len(puts)-1] {
		if !strings.HasPrefix(k, prefix) {
			t.Errorf("put %s outside %s before the manifest", k, prefix)
		}
	}

	m, err := sink.ReadManifest(ctx, store)
	if err != nil || m == nil {
		t.Fatalf("manifest: %v %v", m, err)
	}
	if m.SnapshotID != res.SnapshotID || m.Tenant != "acme" || m.Project != "fake-project" || !m.FullRefresh || m.SpeedFiles != 3 {
		t.Errorf("manifest: %+v", m)
	}
	if m.Watermark.Key != speedKey("resources", "2026-11-25", "t-1-0-4") && m.Watermark.Key != speedKey("patient", "2026-11-25", "t-0-0-9") {
		t.Errorf("watermark: got %s, want the newest speed file", m.Watermark.Key)
	}
	wantRows := map[string]int64{"int_resources__latest": 5, "patients": 3, "observations": 0}
	for name, rows := range wantRows {
		mod, ok := m.Models[name]
		if !ok || mod.Rows != rows || len(mod.Files) != 1 || mod.Files[0] != prefix+name+"/data_0.parquet" {
			t.Errorf("model %s: got %+v, want %d rows in one file", name, mod, rows)
		}
		if got := value(t, c.metrics.modelRows.WithLabelValues("acme", name)); got != float64(rows) {
			t.Errorf("fhirlake_compactor_model_rows{model=%q}: got %v, want %d", name, got, rows)
		}
	}
	if got := value(t, c.metrics.halted.WithLabelValues("acme")); got != 0 {
		t.Errorf("halted: got %v, want 0", got)
	}
	if got := value(t, c.metrics.lastSuccess.WithLabelValues("acme")); got < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last success: got %v", got)
	}
	if n := histogramCount(t, reg, "fhirlake_compactor_duration_seconds"); n != 1 {
		t.Errorf("duration observations: got %d, want 1", n)
	}
	if _, err := os.Stat(req.Dir); !os.IsNotExist(err) {
		t.Errorf("the run directory of a published run is still there: %v", err)
	}

	// Nothing new: no run.
	runs := len(r.requests)
	res2, err := c.Compact(ctx, ten)
	if err != nil {
		t.Fatal(err)
	}
	if !res2.UpToDate || res2.Published || res2.SnapshotID != res.SnapshotID || len(r.requests) != runs {
		t.Errorf("second run: %+v, dbt runs %d → %d", res2, runs, len(r.requests))
	}
}

func TestCompactIncremental(t *testing.T) {
	ctx := context.Background()
	ten, store := newTenant(t, "acme")
	addSpeed(t, store, "resources", "t-0-0-9", "t-0-10-19")
	// Files are dated by the filesystem's clock: date the first two in the past.
	for name, age := range map[string]time.Duration{"t-0-0-9": 2 * time.Hour, "t-0-10-19": time.Hour} {
		at := time.Now().Add(-age)
		if err := os.Chtimes(filepath.Join(store.Root, filepath.FromSlash(speedKey("resources", "2026-11-25", name))), at, at); err != nil {
			t.Fatal(err)
		}
	}
	r := &fakeRunner{}
	c := newTestCompactor(t, r, nil, func(o *Options) { o.Overlap = time.Minute })
	first, err := c.Compact(ctx, ten)
	if err != nil {
		t.Fatal(err)
	}
	addSpeed(t, store, "observation", "t-0-20-29")
	second, err := c.Compact(ctx, ten)
	if err != nil {
		t.Fatal(err)
	}
	if second.FullRefresh || !second.Published {
		t.Errorf("second run: %+v", second)
	}
	req := r.last(t)
	// The state models and resource marts, each part's files; the base alone after a rebuild.
	part := func(model string) string {
		return fmt.Sprintf("%s:map[base:[%s/batch/%s/%s/data_0.parquet] changed:[] delta:[]]", model, ten.Lake, first.SnapshotID, model)
	}
	if got, want := fmt.Sprint(req.Vars["previous_state"]), "map["+part("int_resources__latest")+" "+part("observations")+" "+part("patients")+"]"; got != want {
		t.Errorf("previous_state: got %v, want %v", got, want)
	}
	if req.Vars["state_mode"] != "incremental" {
		t.Errorf("state_mode: got %v, want incremental (nothing changed since the base)", req.Vars["state_mode"])
	}
	// The new file, and the previous watermark's file again (it is within the
	// overlap); not the file before it.
	want := []string{"observation/2026-11-25/t-0-20-29.parquet", "resources/2026-11-25/t-0-10-19.parquet"}
	if got := r.lastPlan(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("plan: got %v, want %v", got, want)
	}
	m, _ := sink.ReadManifest(ctx, store)
	if m.Previous != first.SnapshotID || len(m.History) != 1 || m.History[0] != first.SnapshotID {
		t.Errorf("manifest previous %q history %v, want %s", m.Previous, m.History, first.SnapshotID)
	}
	// The base carried by reference; the changed keys and delta of this run.
	raw := m.Models["int_resources__latest"]
	if got, want := fmt.Sprint(raw.Keys()), fmt.Sprintf("[batch/%[1]s/int_resources__latest/data_0.parquet batch/%[2]s/int_resources__latest/changed_0.parquet batch/%[2]s/int_resources__latest/delta_0.parquet]",
		first.SnapshotID, m.SnapshotID); got != want || raw.Rows != 5 || raw.Delta.Rows != 2 || raw.Changed.Rows != 2 {
		t.Errorf("state model: %v %+v %+v %+v, want files %s", got, raw, raw.Changed, raw.Delta, want)
	}
	if m.Watermark.Key != speedKey("observation", "2026-11-25", "t-0-20-29") {
		t.Errorf("watermark: got %s, want the new file", m.Watermark.Key)
	}
}

func TestCompactFailingTestKeepsPreviousSnapshot(t *testing.T) {
	ctx := context.Background()
	ten, store := newTenant(t, "acme")
	addSpeed(t, store, "resources", "t-0-0-9")
	failing := true
	msg := "Got 1 result, configured to fail if != 0"
	one := int64(1)
	r := &fakeRunner{}
	c := newTestCompactor(t, r, prometheus.NewRegistry(), nil)
	first, err := c.Compact(ctx, ten)
	if err != nil {
		t.Fatal(err)
	}
	r.fail = func(string) ([]NodeResult, error) {
		if !failing {
			return nil, nil
		}
		return []NodeResult{
			{UniqueID: "model.fhirlake.observations", Status: "success"},
			{UniqueID: "test.fhirlake.accepted_values_observations_status__final.123", Status: "fail", Message: &msg, Failures: &one},
			{UniqueID: "model.fhirlake.encounter_summary", Status: "skipped"},
		}, nil
	}
	time.Sleep(10 * time.Millisecond)
	addSpeed(t, store, "resources", "t-0-10-19")
	before := len(store.putKeys())
	res, err := c.Compact(ctx, ten)
	var be *BuildError
	if !errors.As(err, &be) {
		t.Fatalf("got %v, want a BuildError", err)
	}
	for _, want := range []string{"tenant acme", "accepted_values_observations_status__final: fail (1 failing rows)", "1 skipped"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if res.Published || res.SnapshotID != first.SnapshotID {
		t.Errorf("result: published %v snapshot %s, want the previous %s kept", res.Published, res.SnapshotID, first.SnapshotID)
	}
	if puts := store.putKeys()[before:]; len(puts) != 0 {
		t.Errorf("a failed run wrote %v", puts)
	}
	if m, _ := sink.ReadManifest(ctx, store); m.SnapshotID != first.SnapshotID {
		t.Errorf("manifest: got %s, want %s", m.SnapshotID, first.SnapshotID)
	}
	if got := value(t, c.metrics.halted.WithLabelValues("acme")); got != 1 {
		t.Errorf("halted: got %v, want 1", got)
	}
	if got := value(t, c.metrics.failedTests.WithLabelValues("acme")); got != 1 {
		t.Errorf("failed tests: got %v, want 1", got)
	}
	if _, err := os.Stat(r.last(t).Dir); err != nil {
		t.Errorf("the failed run's directory is gone; it is kept for inspection: %v", err)
	}

	// Fixed: the same files now pass and publish.
	failing = false
	res, err = c.Compact(ctx, ten)
	if err != nil || !res.Published {
		t.Fatalf("after the fix: %+v %v", res, err)
	}
	if got := value(t, c.metrics.halted.WithLabelValues("acme")); got != 0 {
		t.Errorf("halted after success: got %v, want 0", got)
	}
	if got := value(t, c.metrics.failedTests.WithLabelValues("acme")); got != 0 {
		t.Errorf("failed tests after success: got %v, want 0", got)
	}
}

func TestCompactAllIsolatesTenants(t *testing.T) {
	ctx := context.Background()
	r := &fakeRunner{fail: func(tenant string) ([]NodeResult, error) {
		if tenant == "globex" {
			return nil, &BuildError{Err: errors.New("exit status 2"), Output: "Compilation Error in model patients"}
		}
		return nil, nil
	}}
	c := newTestCompactor(t, r, nil, func(o *Options) { o.Parallelism = 2 })
	var ts []Tenant
	var stores []*recordingStore
	for _, name := range []string{"acme", "globex", "initech", "umbrella"} {
		ten, s := newTenant(t, name)
		addSpeed(t, s, "resources", "t-0-0-9")
		ts = append(ts, ten)
		stores = append(stores, s)
	}
	results, err := c.CompactAll(ctx, ts)
	if err == nil || !strings.Contains(err.Error(), "tenant globex: dbt build: exit status 2") {
		t.Fatalf("got %v, want globex's failure", err)
	}
	for _, other := range []string{"acme", "initech", "umbrella"} {
		if strings.Contains(err.Error(), other) {
			t.Errorf("error names %s: %v", other, err)
		}
	}
	for i, res := range results {
		m, _ := sink.ReadManifest(ctx, stores[i])
		if ts[i].Name == "globex" {
			if m != nil || res.Published {
				t.Errorf("globex published %v", m)
			}
			continue
		}
		if m == nil || !res.Published || m.SnapshotID != res.SnapshotID {
			t.Errorf("tenant %s: manifest %v, result %+v", ts[i].Name, m, res)
		}
	}
	if got := r.maxRun.Load(); got > 2 {
		t.Errorf("%d tenants ran at once, want at most 2", got)
	}
}

func TestCompactCancelledKeepsPreviousSnapshot(t *testing.T) {
	ten, store := newTenant(t, "acme")
	addSpeed(t, store, "resources", "t-0-0-9")
	r := &fakeRunner{}
	c := newTestCompactor(t, r, nil, nil)
	first, err := c.Compact(context.Background(), ten)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	addSpeed(t, store, "resources", "t-0-10-19")
	r.block = true
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for r.running.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if _, err := c.Compact(ctx, ten); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want the cancellation", err)
	}
	if m, _ := sink.ReadManifest(context.Background(), store); m.SnapshotID != first.SnapshotID {
		t.Errorf("manifest: got %s, want %s", m.SnapshotID, first.SnapshotID)
	}
}

func TestCompactUploadFailurePublishesNothing(t *testing.T) {
	ctx := context.Background()
	ten, store := newTenant(t, "acme")
	addSpeed(t, store, "resources", "t-0-0-9")
	c := newTestCompactor(t, &fakeRunner{}, nil, nil)
	first, err := c.Compact(ctx, ten)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	addSpeed(t, store, "resources", "t-0-10-19")
	store.failPut = func(key string) error {
		if strings.HasSuffix(key, "/patients/data_0.parquet") {
			return fmt.Errorf("put %s: %w", key, sink.ErrAccessDenied)
		}
		return nil
	}
	_, err = c.Compact(ctx, ten)
	if !errors.Is(err, sink.ErrAccessDenied) {
		t.Fatalf("got %v, want the upload's error", err)
	}
	if m, _ := sink.ReadManifest(ctx, store); m.SnapshotID != first.SnapshotID {
		t.Errorf("manifest: got %s, want %s", m.SnapshotID, first.SnapshotID)
	}
}

func TestCompactExpiresAfterPublication(t *testing.T) {
	ctx := context.Background()
	ten, store := newTenant(t, "acme")
	addSpeed(t, store, "resources", "t-0-0-9")
	old := filepath.Join(store.Root, filepath.FromSlash(speedKey("resources", "2026-11-25", "t-0-0-9")))
	weekAgo := time.Now().Add(-8 * 24 * time.Hour)
	if err := os.Chtimes(old, weekAgo, weekAgo); err != nil {
		t.Fatal(err)
	}
	c := newTestCompactor(t, &fakeRunner{}, nil, func(o *Options) {
		o.Expire = ExpireOptions{SpeedRetention: 24 * time.Hour, KeepSnapshots: 2}
	})
	var ids []string
	for i := range 4 {
		time.Sleep(1100 * time.Millisecond) // distinct snapshot ids, and newer files
		addSpeed(t, store, "resources", fmt.Sprintf("t-1-%d-%d", i*10, i*10+9))
		res, err := c.Compact(ctx, ten)
		if err != nil {
			t.Fatal(err)
		}
		if res.ExpireErr != nil {
			t.Fatal(res.ExpireErr)
		}
		ids = append(ids, res.SnapshotID)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("the week-old speed file is still there: %v", err)
	}
	objs, err := store.List(ctx, lake.BatchPrefix)
	if err != nil {
		t.Fatal(err)
	}
	left := map[string]bool{}
	for _, o := range objs {
		id, _ := lake.ParseSnapshotKey(o.Key)
		left[id] = true
	}
	if len(left) != 2 || !left[ids[3]] || !left[ids[2]] {
		t.Errorf("snapshots left: %v, want the newest two of %v", left, ids)
	}
	m, _ := sink.ReadManifest(ctx, store)
	if m.SpeedExpiredBefore.IsZero() {
		t.Error("the manifest does not record that speed files were expired")
	}
	// A full refresh would now silently drop the expired data: refused.
	c.opts.FullRefresh = true
	if _, err := c.Compact(ctx, ten); err == nil || !strings.Contains(err.Error(), "full refresh would lose") {
		t.Errorf("full refresh after expiry: got %v", err)
	}
}

// A compaction without an iceberg section removes a pointer to Iceberg tables left
// from when the deployment had one: readers would stay on the snapshot it names.
func TestCompactWithoutIcebergRemovesTheTablesPointer(t *testing.T) {
	ctx := context.Background()
	ten, store := newTenant(t, "acme")
	addSpeed(t, store, "resources", "t-0-0-9")
	pointer := filepath.Join(store.Root, filepath.FromSlash(lake.IcebergKey))
	if err := os.MkdirAll(filepath.Dir(pointer), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pointer, []byte(`{"snapshot_id":"20261101T000000Z-aaaaaa","tables":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newTestCompactor(t, &fakeRunner{}, nil, nil)
	res, err := c.Compact(ctx, ten)
	if err != nil || !res.Published {
		t.Fatalf("compact: %+v, %v", res, err)
	}
	if _, err := os.Stat(pointer); !os.IsNotExist(err) {
		t.Errorf("%s is still there after a compaction without Iceberg: %v", lake.IcebergKey, err)
	}
}
