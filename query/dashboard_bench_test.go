package query

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"fhirlake/compactor"
	"fhirlake/lake"
	"fhirlake/query/querytest"
	"fhirlake/sink"
)

// dashboardQueries are five typical dashboard panels.
var dashboardQueries = []struct{ name, sql string }{
	{"observations by code", `SELECT code, code_display, count(*) AS n FROM observation GROUP BY ALL ORDER BY n DESC LIMIT 10`},
	{"latest heart rate per patient", `SELECT patient_id, arg_max(value_quantity, effective) AS bpm FROM observation WHERE code = '8867-4' GROUP BY 1 ORDER BY 1 LIMIT 100`},
	{"observations per month", `SELECT date_trunc('month', effective) AS month, count(*) AS n FROM observation GROUP BY 1 ORDER BY 1`},
	{"patients by gender and age", `SELECT gender, (date_diff('year', birth_date, TIMESTAMP '2025-01-06') // 10) * 10 AS age, count(*) AS n FROM patient GROUP BY ALL ORDER BY ALL`},
	{"high glucose by gender", `SELECT p.gender, count(*) AS n, avg(o.value_quantity) AS mean FROM observation o JOIN patient p ON p._resource_id = o.patient_id WHERE o.code = '2339-0' AND o.value_quantity > 100 GROUP BY 1 ORDER BY 1`},
}

// TestDashboardBenchmark measures the p50 and p95 latency of the dashboard
// queries over a tenant of 1M+ observations: a batch snapshot built by the
// compactor (dbt) plus a speed-layer tail written afterwards, read from a
// local directory and from S3 directly (httpfs: cold, the first query of a
// new session; warm, with DuckDB's caches filled). `make bench-query` runs
// it; it is skipped otherwise. The lake is kept in
// $FHIRLAKE_BENCH_QUERY_DIR (default .cache/bench-query under the
// repository) and rebuilt only when missing.
func TestDashboardBenchmark(t *testing.T) {
	if os.Getenv("FHIRLAKE_BENCH_QUERY") == "" {
		t.Skip("set FHIRLAKE_BENCH_QUERY=1 (make bench-query) to run the query benchmark")
	}
	patients, _ := strconv.Atoi(envOr("FHIRLAKE_BENCH_PATIENTS", "84000"))
	iters, _ := strconv.Atoi(envOr("FHIRLAKE_BENCH_ITERATIONS", "30"))
	dir := envOr("FHIRLAKE_BENCH_QUERY_DIR", filepath.Join(repoRoot(t), ".cache", "bench-query"))
	lake := filepath.Join(dir, fmt.Sprintf("lake-p%d", patients))
	root := filepath.Join(lake, "acme")
	ctx := context.Background()
	if _, err := os.Stat(filepath.Join(lake, ".ready")); err != nil {
		buildBenchLake(t, ctx, lake, patients)
	}
	// The files of one flush are dated within a minute of each other here,
	// so an overlap of a minute re-reads the last range before the
	// watermark, as compact.overlap does for a slow upload.
	s, err := Open(ctx, "acme", root, Options{Threads: 2, MemoryLimit: "2GB", SpeedOverlap: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var obs int
	if err := s.Run(ctx, "SELECT count(*) FROM observation", func(r *sql.Rows) error { r.Next(); return r.Scan(&obs) }); err != nil {
		t.Fatal(err)
	}
	cat := s.Catalog()
	snap := "none"
	if cat.Snapshot != nil {
		snap = cat.Snapshot.SnapshotID
	}
	t.Logf("lake: %d observations (latest versions), snapshot %s, %d speed files read beside it, %d Observations changed in them", obs, snap, cat.SpeedFiles, cat.Changed)
	report(t, "local", s, iters, nil)
	rebuilds(t, s)
	// The first answer of a new session: it opens (lists the lake) and
	// answers one panel, making what that panel reads.
	lines := []string{fmt.Sprintf("%-48s %8s %8s", "local, first answer of a new session", "open", "query")}
	for _, q := range append([]struct{ name, sql string }{{"patient count", "SELECT count(*) FROM patient"}}, dashboardQueries...) {
		start := time.Now()
		cs, err := Open(ctx, "acme", root, Options{Threads: 2, MemoryLimit: "2GB", SpeedOverlap: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		opened := time.Since(start)
		start = time.Now()
		if _, err := cs.Export(ctx, io.Discard, q.sql, "json", ExportOptions{}); err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		lines = append(lines, fmt.Sprintf("  %-46s %8s %8s", q.name, ms(opened), ms(time.Since(start))))
		cs.Close()
	}
	t.Log("\n" + strings.Join(lines, "\n"))

	endpoint := os.Getenv("FHIRLAKE_S3_ENDPOINT")
	if endpoint == "" {
		t.Log("S3: skipped (no FHIRLAKE_S3_ENDPOINT; run the local stack and eval \"$(deploy/local/stack env)\")")
		return
	}
	store, err := sink.NewS3(ctx, sink.S3Options{
		Bucket: envOr("FHIRLAKE_TENANT_ACME_BUCKET", "fhirlake-acme"), Prefix: fmt.Sprintf("bench-query/p%d", patients),
		Endpoint: endpoint, Region: envOr("FHIRLAKE_S3_REGION", "us-east-1"), PathStyle: true,
		AccessKey: os.Getenv("FHIRLAKE_TENANT_ACME_ACCESS_KEY"), SecretKey: os.Getenv("FHIRLAKE_TENANT_ACME_SECRET_KEY"),
	})
	if err != nil {
		t.Fatal(err)
	}
	upload(t, ctx, store, root)
	ext := httpfsExtension(t)
	access := S3Access{Bucket: envOr("FHIRLAKE_TENANT_ACME_BUCKET", "fhirlake-acme"), Prefix: fmt.Sprintf("bench-query/p%d", patients),
		Endpoint: endpoint, Region: envOr("FHIRLAKE_S3_REGION", "us-east-1"), PathStyle: true,
		AccessKey: os.Getenv("FHIRLAKE_TENANT_ACME_ACCESS_KEY"), SecretKey: os.Getenv("FHIRLAKE_TENANT_ACME_SECRET_KEY")}
	o := Options{Threads: 2, MemoryLimit: "2GB", SpeedOverlap: time.Nanosecond, HTTPFSExtension: ext}
	// Cold: each query is the first of a new session, whose caches are
	// empty: it reads every footer and every byte it needs from S3.
	lines = []string{fmt.Sprintf("%-48s %8s %8s", "S3 direct, cold (new session)", "open", "query")}
	for _, q := range dashboardQueries {
		start := time.Now()
		cs, err := OpenS3(ctx, "acme", store, access, o)
		if err != nil {
			t.Fatal(err)
		}
		opened := time.Since(start)
		start = time.Now()
		if _, err := cs.Export(ctx, io.Discard, q.sql, "json", ExportOptions{}); err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		lines = append(lines, fmt.Sprintf("  %-46s %8s %8s", q.name, ms(opened), ms(time.Since(start))))
		cs.Close()
	}
	t.Log("\n" + strings.Join(lines, "\n"))
	ss, err := OpenS3(ctx, "acme", store, access, o)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	var warm []time.Duration
	for range 10 {
		start := time.Now()
		if changed, err := ss.Refresh(ctx); err != nil || changed {
			t.Fatalf("warm refresh: %v %v", changed, err)
		}
		warm = append(warm, time.Since(start))
	}
	t.Logf("S3 warm refresh (listing of speed/ and the manifest, %d speed files read): p50 %s p95 %s", ss.Catalog().SpeedFiles, pct(warm, 50), pct(warm, 95))
	report(t, "S3 direct, warm", ss, iters, nil)
	report(t, "S3 direct, warm, refresh before each query", ss, iters, func() {
		if _, err := ss.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	})
	rebuilds(t, ss)
}

func report(t *testing.T, label string, s *Session, iters int, before func()) {
	t.Helper()
	ctx := context.Background()
	var all []time.Duration
	lines := []string{fmt.Sprintf("%-48s %8s %8s %8s", label, "p50", "p95", "rows")}
	for _, q := range dashboardQueries {
		var times []time.Duration
		var res ExportResult
		for i := 0; i <= iters; i++ {
			start := time.Now()
			if before != nil {
				before()
			}
			var err error
			if res, err = s.Export(ctx, io.Discard, q.sql, "json", ExportOptions{}); err != nil {
				t.Fatalf("%s: %v", q.name, err)
			}
			if i > 0 { // the first run warms caches
				times = append(times, time.Since(start))
			}
		}
		all = append(all, times...)
		lines = append(lines, fmt.Sprintf("  %-46s %8s %8s %8d", q.name, ms(pct(times, 50)), ms(pct(times, 95)), res.Rows))
	}
	lines = append(lines, fmt.Sprintf("  %-46s %8s %8s", "all five", ms(pct(all, 50)), ms(pct(all, 95))))
	t.Log("\n" + strings.Join(lines, "\n"))
}

// rebuilds times the rebuild of the views made so far that follows any
// change of the lake (a new speed file or snapshot): the changes of their
// types beside the snapshot are ranked again. The build is forced by
// forgetting the lake's fingerprint.
func rebuilds(t *testing.T, s *Session) {
	t.Helper()
	ctx := context.Background()
	var times []time.Duration
	for range 5 {
		c := *s.cat.Load()
		c.fingerprint = ""
		s.cat.Store(&c)
		start := time.Now()
		if changed, err := s.Refresh(ctx); err != nil || !changed {
			t.Fatalf("rebuild: %v %v", changed, err)
		}
		times = append(times, time.Since(start))
	}
	var mb float64
	if err := s.internalQuery(ctx, "SELECT coalesce(sum(memory_usage_bytes), 0) / 1e6 FROM duckdb_memory() WHERE tag = 'IN_MEMORY_TABLE'",
		func(r *sql.Rows) error { return r.Scan(&mb) }); err != nil {
		t.Fatal(err)
	}
	t.Logf("views made so far (%s) rebuilt after a change of the lake: p50 %s p95 %s (%d changed resources of their types; tables of changes %.0f MB)",
		strings.Join(s.Catalog().Made, ", "), ms(pct(times, 50)), ms(pct(times, 95)), s.Catalog().Changed, mb)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}

// buildBenchLake writes 98% of the synthetic stream, dates its files a day
// back, compacts it with the real compactor (dbt), then writes the last 2%
// as the fresh speed layer a dashboard reads beside the snapshot.
func buildBenchLake(t *testing.T, ctx context.Context, lake string, patients int) {
	t.Helper()
	os.RemoveAll(lake)
	root := filepath.Join(lake, "acme")
	// Events of the stream: about 20 per patient; 98% before the snapshot.
	total := countEvents(t, patients)
	head := total * 98 / 100
	start := time.Now()
	n, err := querytest.SynthLake(ctx, root, "acme", querytest.SynthOptions{Patients: patients, Seed: 1, Take: head})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("speed layer before the snapshot: %d changes in %s", n, time.Since(start).Round(time.Second))
	// Date the files as a day of flushes would be: one offset range every
	// 10 minutes, the last one a day ago.
	var files []string
	ranges := map[string]int{}
	if err := filepath.WalkDir(filepath.Join(root, "speed"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files = append(files, p)
		ranges[rangeOf(d.Name())] = 0
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	names := sortedKeys(ranges)
	sort.Slice(names, func(i, j int) bool { return firstOffset(names[i]) < firstOffset(names[j]) })
	old := time.Now().Add(-24 * time.Hour)
	for _, p := range files {
		i := indexOf(names, rangeOf(filepath.Base(p)))
		at := old.Add(-time.Duration(len(names)-1-i) * 10 * time.Minute)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	start = time.Now()
	if _, _, err := compactor.CompactLocalLake(ctx, lake, filepath.Join(lake, ".compact"), []string{"acme"}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("compact (needs dbt: deploy/local/stack install): %v", err)
	}
	t.Logf("compaction: %s", time.Since(start).Round(time.Second))
	if n, err = querytest.SynthLake(ctx, root, "acme", querytest.SynthOptions{Patients: patients, Seed: 1, Skip: head, Ingest: time.Date(2025, 1, 7, 8, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	t.Logf("speed layer after the snapshot: %d changes", n)
	os.RemoveAll(filepath.Join(lake, ".compact"))
	os.RemoveAll(filepath.Join(lake, ".acme-work"))
	if err := os.WriteFile(filepath.Join(lake, ".ready"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func rangeOf(name string) string { return strings.TrimSuffix(name, ".parquet") }

// firstOffset reads <topic>-<partition>-<first>-<last>.
func firstOffset(r string) int64 {
	parts := strings.Split(r, "-")
	if len(parts) < 2 {
		return 0
	}
	n, _ := strconv.ParseInt(parts[len(parts)-2], 10, 64)
	return n
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return 0
}

func countEvents(t *testing.T, patients int) int {
	t.Helper()
	n, err := querytest.CountEvents(patients, 1)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// upload copies the lake to the store as it came to be: the speed files of
// the snapshot first, then the snapshot with its watermark set to the
// newest of them as S3 dates them, then, a second later, the tail. Nothing
// is uploaded when the manifest is there already.
func upload(t *testing.T, ctx context.Context, store sink.Store, root string) {
	t.Helper()
	if objs, err := store.List(ctx, lake.ManifestKey); err != nil {
		t.Fatal(err)
	} else if len(objs) > 0 {
		return
	}
	m, err := lake.ReadManifest(os.DirFS(root))
	if err != nil || m == nil {
		t.Fatalf("bench lake has no manifest: %v", err)
	}
	start := time.Now()
	put := func(sub string, keep func(fs.FileInfo) bool) int {
		n := 0
		err := filepath.WalkDir(filepath.Join(root, sub), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
				return err
			}
			info, _ := d.Info()
			if !keep(info) {
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			n++
			return store.Put(ctx, filepath.ToSlash(rel), p)
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	cut := m.Watermark.Modified.Add(time.Second)
	n := put("speed", func(i fs.FileInfo) bool { return i.ModTime().Before(cut) })
	objs, err := store.List(ctx, "speed/")
	if err != nil {
		t.Fatal(err)
	}
	var newest time.Time
	for _, o := range objs {
		if o.Modified.After(newest) {
			newest = o.Modified
		}
	}
	n += put("batch", func(fs.FileInfo) bool { return true })
	b, err := os.ReadFile(filepath.Join(root, lake.ManifestKey))
	if err != nil {
		t.Fatal(err)
	}
	patched := strings.Replace(string(b), m.Watermark.Modified.Format(time.RFC3339Nano), newest.UTC().Format(time.RFC3339Nano), 1)
	tmp := filepath.Join(t.TempDir(), "batch.json")
	if err := os.WriteFile(tmp, []byte(patched), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := store.Put(ctx, lake.ManifestKey, tmp); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	n += put("speed", func(i fs.FileInfo) bool { return !i.ModTime().Before(cut) })
	t.Logf("uploaded %d objects to %s in %s", n, store.URL(), time.Since(start).Round(time.Second))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}
