//go:build integration

// The compaction benchmark's harness (TestIntegrationCompactBenchmark): a tenant's
// lake made once and kept, a copy of it per run, `fhirlake compact` timed with the
// peak memory of its process tree, and a change of a share of the tenant's resources
// written through `fhirlake backfill`. It drives the binary only, and reads results
// from the manifest and the published tables.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"fhirlake/config"
	"fhirlake/lake"
	"fhirlake/sink"
)

// benchTenant is the benchmark's one tenant.
const benchTenant = "bench"

// benchGenerate are the flags of `fhirlake generate` that make the benchmark's
// stream, after --patients: a fifth of the resources updated, some deleted.
const benchGenerate = "--seed 1 --updates 0.2 --deletes 0.05 --controls 0 --malformed 0 --unroutable 0"

// compactBench is one benchmark run: the kept lake, and the copy this run compacts.
type compactBench struct {
	dir     string // .cache/bench-compact/p<patients>: the kept lake and the runs
	lakeDir string // this run's copy of the tenant's lake
	config  string // this run's configuration
	dbt     string
	changes int // changes written so far
}

// newCompactBench makes the tenant's lake unless a complete one of the same recipe is
// kept, then copies it (hard links) into a fresh run directory with a configuration
// that compacts everything at once, keeps every speed file and sets memoryLimit.
func newCompactBench(t *testing.T, dir, patients, dbt string, memoryLimit config.ByteSize) *compactBench {
	t.Helper()
	b := &compactBench{dir: dir, dbt: dbt}
	base := b.baseLake(t, patients)
	run := filepath.Join(dir, "run")
	if err := os.RemoveAll(run); err != nil {
		t.Fatal(err)
	}
	b.lakeDir = filepath.Join(run, "lake", benchTenant)
	start := time.Now()
	files := linkTree(t, base, b.lakeDir)
	t.Logf("copied the lake (%d files, hard links) in %s", files, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if !t.Failed() { // a failed run's directory stays, to be looked at
			os.RemoveAll(run)
		}
	})
	b.config = filepath.Join(run, "compact.yaml")
	conf := fmt.Sprintf("work_dir: %q\nmetrics:\n  listen: \"\"\n"+
		"compact:\n  consistency_delay: 0s\n  overlap: 0s\n  speed_retention: 0s\n  threads: 2\n  memory_limit: %s\n"+
		"tenants:\n  - name: %s\n    store:\n      type: local\n      path: %q\n",
		filepath.Join(run, "work"), memoryLimit, benchTenant, b.lakeDir)
	if err := os.WriteFile(b.config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// baseLake returns the kept lake of the tenant, making it when it is missing or was
// made another way: `fhirlake generate` streamed into a gzipped file, then
// `fhirlake backfill` of that file, which writes the raw dataset and every view
// dataset through the consumer's writer. Both hold a bounded amount in memory (the
// in-process Kafka of `fhirlake demo` holds the whole stream: 1.7 GB at 20,000
// patients).
func (b *compactBench) baseLake(t *testing.T, patients string) string {
	t.Helper()
	lakeDir := filepath.Join(b.dir, "lake", benchTenant)
	recipe := fmt.Sprintf("fhirlake generate --tenants %s --patients %s %s | fhirlake backfill\n", benchTenant, patients, benchGenerate)
	marker := filepath.Join(b.dir, "complete")
	if got, err := os.ReadFile(marker); err == nil && string(got) == recipe {
		return lakeDir
	}
	if err := os.RemoveAll(b.dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	records := filepath.Join(b.dir, "records.ndjson.gz")
	f, err := os.Create(records)
	if err != nil {
		t.Fatal(err)
	}
	zw, err := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(zw, 1<<20)
	args := append([]string{"generate", "-q", "--tenants", benchTenant, "--patients", patients}, strings.Fields(benchGenerate)...)
	gen := exec.Command(binary, append(args, "--out", "/dev/stdout")...)
	var stderr bytes.Buffer
	gen.Stdout, gen.Stderr = bw, &stderr
	if err := gen.Run(); err != nil {
		t.Fatalf("fhirlake generate: %v\n%s", err, stderr.String())
	}
	for _, err := range []error{bw.Flush(), zw.Close(), f.Close()} {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%s in %s", strings.TrimSpace(stderr.String()), time.Since(start).Round(time.Second))

	start = time.Now()
	conf := fmt.Sprintf("work_dir: %q\nmetrics:\n  listen: \"\"\ntenants:\n  - name: %s\n    store:\n      type: local\n      path: %q\n",
		filepath.Join(b.dir, "work"), benchTenant, lakeDir)
	backfillConfig := filepath.Join(b.dir, "backfill.yaml")
	if err := os.WriteFile(backfillConfig, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "--config", backfillConfig, "backfill", "-q", "--tenant", benchTenant, records).CombinedOutput()
	if err != nil {
		t.Fatalf("fhirlake backfill: %v\n%s", err, lastLines(string(out), 30))
	}
	t.Logf("backfilled in %s: %s", time.Since(start).Round(time.Second), strings.TrimSpace(string(out)))
	for _, p := range []string{records, filepath.Join(b.dir, "work")} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(marker, []byte(recipe), 0o644); err != nil {
		t.Fatal(err)
	}
	return lakeDir
}

// linkTree hard-links every file under src to the same path under dst, so that a run
// may add files to and remove files from its copy without touching the kept lake,
// whose files keep their modification times.
func linkTree(t *testing.T, src, dst string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		n++
		return os.Link(p, filepath.Join(dst, rel))
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// measured is one run of `fhirlake compact`.
type measured struct {
	took time.Duration
	// peak bounds the resident memory of the process tree (the compactor, dbt and its
	// DuckDB) from above: the largest sum of the peaks (VmHWM, read every 200 ms) of
	// the processes alive together (treeMemory.bound), and at least the kernel's exact
	// peak of the largest process.
	peak int64
	// together is the largest sum of the tree's resident memory seen at one sample: a
	// bound from below, with largest (the largest process's exact peak).
	together, largest int64
	m                 *lake.Manifest
	parse             string // how dbt loaded the project (the log's dbt_parse)
}

// compact runs `fhirlake compact` with args, measuring it, and reads the manifest it
// published.
func (b *compactBench) compact(t *testing.T, args ...string) measured {
	t.Helper()
	c := exec.Command(binary, append([]string{"--config", b.config, "compact", "--log-format", "json"}, args...)...)
	c.Env = append(os.Environ(), "FHIRLAKE_DBT="+b.dbt)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	start := time.Now()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// The sampler is this function's: it stops once the process has been waited for.
	done, sampled := make(chan struct{}), make(chan treeMemory, 1)
	go func() {
		mem := treeMemory{hwm: map[int]int64{}}
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			mem.sample(c.Process.Pid)
			select {
			case <-done:
				sampled <- mem
				return
			case <-tick.C:
			}
		}
	}()
	err := c.Wait()
	r := measured{took: time.Since(start)}
	close(done)
	mem := <-sampled
	if err != nil {
		t.Fatalf("fhirlake compact %v: %v\n%s", args, err, lastLines(out.String(), 30))
	}
	if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.largest = ru.Maxrss << 10 // kilobytes on Linux
	}
	r.together = mem.together
	r.peak = max(mem.bound(), r.largest, r.together)
	store, err := sink.NewLocal(b.lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	if r.m, err = sink.ReadManifest(context.Background(), store); err != nil || r.m == nil {
		t.Fatalf("manifest after fhirlake compact %v: %v %v", args, r.m, err)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		var rec struct {
			Msg, Slowest string
			Parse        string `json:"dbt_parse"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Slowest != "" {
			t.Logf("fhirlake compact %v: dbt's parse %s; slowest dbt nodes: %s", args, rec.Parse, rec.Slowest)
			r.parse = rec.Parse
		}
	}
	return r
}

// treeMemory is what samples of a process tree's memory found.
type treeMemory struct {
	together int64         // the largest sum of the tree's resident memory
	hwm      map[int]int64 // each process's peak resident memory (VmHWM)
	// alive holds, for each sample, the processes of the tree it found.
	alive [][]int
}

// bound is an upper bound of the tree's resident memory at any moment: the largest
// sum of the peaks (VmHWM) of the processes alive at two consecutive samples. A
// process's memory at any moment is at most its peak, and the processes that ran
// between two samples were alive at one of them — but for one that lived less than
// the 200 ms between samples, which this leaves out. Processes that ran one after the
// other (dbt's run, then its parse for the next run) are not added up.
func (m *treeMemory) bound() int64 {
	var out int64
	for i := range m.alive {
		seen, sum := map[int]bool{}, int64(0)
		for _, pids := range m.alive[max(i-1, 0) : i+1] {
			for _, pid := range pids {
				if !seen[pid] {
					seen[pid] = true
					sum += m.hwm[pid]
				}
			}
		}
		out = max(out, sum)
	}
	return out
}

// sample reads the resident memory and its peak of root and every descendant from
// /proc. Processes come and go between reads; those gone are left out.
func (m *treeMemory) sample(root int) {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	children := map[int][]int{}
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// "pid (comm) state ppid …": comm may hold anything, but the last ')' ends it.
		i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if i < 0 || j < i {
			continue
		}
		pid, err1 := strconv.Atoi(string(bytes.TrimSpace(b[:i])))
		f := strings.Fields(string(b[j+1:]))
		if err1 != nil || len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
	}
	var sum int64
	var alive []int
	for queue := []int{root}; len(queue) > 0; queue = queue[1:] {
		pid := queue[0]
		queue = append(queue, children[pid]...)
		rss, hwm := procMemory(pid)
		if hwm == 0 {
			continue // gone since the listing
		}
		sum += rss
		m.hwm[pid] = max(m.hwm[pid], hwm)
		alive = append(alive, pid)
	}
	m.together = max(m.together, sum)
	m.alive = append(m.alive, alive)
}

// procMemory reads a process's resident memory and its peak (VmRSS, VmHWM) in bytes;
// zero once it is gone.
func procMemory(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			continue
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// benchChange is a change of a share of the resources of a published snapshot.
type benchChange struct {
	db               *sql.DB // holds the table changes(resource_type, resource_id, is_delete, new_version)
	upserts, deletes int
	files            int
	took             time.Duration
}

// changeFiles is how many files the change is written as, each loaded on its own, as
// a consumer flushing through a day writes many small sets of files.
const changeFiles = 24

// change picks share of the resources of the snapshot m (counted as its manifest
// counts int_resources__latest) among those not deleted: the first by the md5 of
// type/id, so spread over the id space and the same every run. It writes for each a
// new version (versionId + 1, lastUpdated now), or for one in fifty of those of a type
// nothing references (Observation, Condition, MedicationRequest) a delete, as NDJSON
// files loaded by `fhirlake backfill`. The resources are read from the snapshot's state
// of every resource, int_resources__latest (docs/format/snapshot.md).
func (b *compactBench) change(t *testing.T, m *lake.Manifest, share float64) *benchChange {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1) // the table lives in the one connection's database
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec("SET memory_limit = '2GB'"); err != nil {
		t.Fatal(err)
	}
	n := int64(math.Ceil(share * float64(m.Models["int_resources__latest"].Rows)))
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	q := fmt.Sprintf(`CREATE TABLE changes AS
		WITH picked AS (
		    SELECT resource_type, resource_id, version_id, resource, md5(resource_type || '/' || resource_id) AS h
		    FROM %s WHERE NOT is_deleted ORDER BY h LIMIT %d)
		SELECT resource_type, resource_id,
		       row_number() OVER (ORDER BY h) %% 50 = 0
		           AND resource_type IN ('Observation', 'Condition', 'MedicationRequest') AS is_delete,
		       CAST(TRY_CAST(version_id AS BIGINT) + 1 AS VARCHAR) AS new_version,
		       json_merge_patch(resource, json_object('meta', json_object('versionId', new_version, 'lastUpdated', '%s')))::VARCHAR AS resource
		FROM picked ORDER BY h`,
		b.modelFiles(t, m, "int_resources__latest"), n, now)
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("pick the changes: %v", err)
	}
	ch := &benchChange{db: db}
	b.changes++
	dir := filepath.Join(filepath.Dir(b.config), fmt.Sprintf("changes-%d", b.changes))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var total int
	if err := db.QueryRow("SELECT count(*) FROM changes").Scan(&total); err != nil {
		t.Fatal(err)
	}
	if total == 0 {
		t.Fatal("no resource to change")
	}
	rows, err := db.Query("SELECT resource_type, resource_id, is_delete, resource FROM changes")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	bufs := make([]bytes.Buffer, changeFiles)
	for i := 0; rows.Next(); i++ {
		var typ, id, resource string
		var del bool
		if err := rows.Scan(&typ, &id, &del, &resource); err != nil {
			t.Fatal(err)
		}
		w := &bufs[i*changeFiles/total]
		if del {
			ch.deletes++
			line, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction",
				"entry": []any{map[string]any{"request": map[string]string{"method": "DELETE", "url": typ + "/" + id}}}})
			w.Write(append(line, '\n'))
			continue
		}
		ch.upserts++
		w.WriteString(resource + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var files []string
	for i := range bufs {
		if bufs[i].Len() == 0 {
			continue
		}
		p := filepath.Join(dir, fmt.Sprintf("changes-%02d.ndjson", i))
		if err := os.WriteFile(p, bufs[i].Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	ch.files = len(files)
	start := time.Now()
	out, err := exec.Command(binary, append([]string{"--config", b.config, "backfill", "-q", "--tenant", benchTenant}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("fhirlake backfill of the changes: %v\n%s", err, lastLines(string(out), 30))
	}
	ch.took = time.Since(start)
	return ch
}

// check reads the published state of every resource and counts the changed resources
// that are not at their new version (or not deleted).
func (ch *benchChange) check(t *testing.T, b *compactBench, m *lake.Manifest) {
	t.Helper()
	var wrong int
	q := fmt.Sprintf(`SELECT count(*) FROM changes c LEFT JOIN %s s USING (resource_type, resource_id)
		WHERE NOT coalesce(CASE WHEN c.is_delete THEN s.is_deleted
		                        ELSE NOT s.is_deleted AND s.version_id IS NOT DISTINCT FROM c.new_version END, false)`,
		b.modelFiles(t, m, "int_resources__latest"))
	if err := ch.db.QueryRow(q).Scan(&wrong); err != nil {
		t.Fatal(err)
	}
	if wrong != 0 {
		t.Errorf("snapshot %s: %d of the %d changed resources are not at their new version", m.SnapshotID, wrong, ch.upserts+ch.deletes)
	}
}

// modelFiles is a published table, from the manifest, as a DuckDB relation: a state
// model merged on read (snapshotModelSQL).
func (b *compactBench) modelFiles(t *testing.T, m *lake.Manifest, model string) string {
	t.Helper()
	return snapshotModelSQL(t, m, b.lakeDir, model)
}

// speedRows counts the rows of the lake's speed files.
func (b *compactBench) speedRows(t *testing.T) int64 {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	if err := db.QueryRow(fmt.Sprintf("SELECT sum(num_rows) FROM parquet_file_metadata('%s/speed/*/*/*.parquet')", b.lakeDir)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// gib is a size in GiB, for the report.
func gib(n int64) string { return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30)) }
