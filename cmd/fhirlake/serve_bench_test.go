package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"fhirlake/config"
	"fhirlake/query/querytest"
)

// TestServeBenchmark measures `fhirlake serve` with a worker per tenant, as
// deployed: how long a tenant's first request takes when its worker must
// start (a small lake, and the 1M-observation lake of the query
// benchmark), and globex's latency alone and while acme runs four
// expensive queries at once. FHIRLAKE_BENCH_FIRST_ONLY=1 stops after the
// first answers (FHIRLAKE_BENCH_STARTS of each, default 5), to compare
// them between builds. `make bench-query` runs it after
// TestDashboardBenchmark (query/), which builds the large lake; it is
// skipped otherwise.
func TestServeBenchmark(t *testing.T) {
	if os.Getenv("FHIRLAKE_BENCH_QUERY") == "" {
		t.Skip("set FHIRLAKE_BENCH_QUERY=1 (make bench-query) to run the serve benchmark")
	}
	patients := envOrDefault("FHIRLAKE_BENCH_PATIENTS", "84000")
	dir := envOrDefault("FHIRLAKE_BENCH_QUERY_DIR", filepath.Join("..", "..", ".cache", "bench-query"))
	big, err := filepath.Abs(filepath.Join(dir, "lake-p"+patients, "acme"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "lake-p"+patients, ".ready")); err != nil {
		t.Skipf("no benchmark lake in %s: run `make bench-query`, which builds it first", dir)
	}
	// The files of one flush of the benchmark's lake are dated within a
	// minute of each other and ranges 10 minutes apart: an overlap of a
	// minute reads the 14 speed files beside the snapshot that the query
	// benchmark reads, the default hour 56 (more ranges before the
	// watermark, read again).
	overlap := envOrDefault("FHIRLAKE_BENCH_SPEED_OVERLAP", "1m")
	work := t.TempDir()
	small := filepath.Join(work, "globex")
	n, err := querytest.SynthLake(context.Background(), small, "globex", querytest.SynthOptions{Patients: 2000, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("acme: the query benchmark's lake (%s patients, speed_overlap %s); globex: %d events of 2,000 patients", patients, overlap, n)

	keys := map[string]string{"acme": "acme-bench-key", "globex": "globex-bench-key"}
	addr := freeAddr(t)
	cfg := fmt.Sprintf(`work_dir: %s
tenants:
  - {name: acme, store: {type: local, path: %s}}
  - {name: globex, store: {type: local, path: %s}}
serve:
  listen: %s
  query_timeout: 60s
  worker_idle_timeout: 1s
  speed_overlap: %s
  api_keys:
    - {tenant: acme, name: bench, key_sha256: %s}
    - {tenant: globex, name: bench, key_sha256: %s}
`, filepath.Join(work, "work"), big, small, addr, overlap, config.HashAPIKey(keys["acme"]), config.HashAPIKey(keys["globex"]))
	cfgPath := filepath.Join(work, "fhirlake.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(os.Args[0], "serve", "--config", cfgPath, "--log-level", "warn")
	srv.Env = append(os.Environ(), "FHIRLAKE_TEST_COMMAND=1")
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Signal(os.Interrupt); _ = srv.Wait() }()
	base := "http://" + addr
	waitHealthy(t, base)

	ask := func(tenant, sql string) (time.Duration, error) {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/tenants/"+tenant+"/query?format=csv", strings.NewReader(sql))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Authorization", "Bearer "+keys[tenant])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			return 0, fmt.Errorf("%s: %d %s %w", tenant, resp.StatusCode, b, err)
		}
		return time.Since(start), nil
	}

	// First answers: each tenant's worker has stopped (idle for 1 s)
	// before each request: a count of one view, and for acme one panel
	// of the largest view.
	starts, _ := strconv.Atoi(envOrDefault("FHIRLAKE_BENCH_STARTS", "5"))
	firsts := []struct{ label, tenant, sql string }{
		{"globex", "globex", "SELECT count(*) FROM patient"},
		{"acme", "acme", "SELECT count(*) FROM patient"},
		{"acme, observations by code", "acme", "SELECT code, code_display, count(*) AS n FROM observation GROUP BY ALL ORDER BY n DESC LIMIT 10"},
	}
	first := map[string][]time.Duration{}
	for range starts {
		for _, f := range firsts {
			waitNoWorker(t, srv.Process.Pid)
			d, err := ask(f.tenant, f.sql)
			if err != nil {
				t.Fatal(err)
			}
			first[f.label] = append(first[f.label], d)
		}
	}
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) }
	var b strings.Builder
	fmt.Fprintf(&b, "\nfirst answer of a new worker (SELECT count(*) FROM patient, and a panel over observation), %d starts each:\n", starts)
	for _, f := range firsts {
		q := quantiles(first[f.label])
		fmt.Fprintf(&b, "  %-28s p50 %s ms, max %s ms\n", f.label, ms(q[50]), ms(q[100]))
	}
	if os.Getenv("FHIRLAKE_BENCH_FIRST_ONLY") != "" {
		t.Log(b.String())
		return
	}

	panel := `SELECT gender, count(*) AS n FROM patient GROUP BY 1 ORDER BY 1`
	latencies := func(rounds int) []time.Duration {
		var ds []time.Duration
		for range rounds {
			d, err := ask("globex", panel)
			if err != nil {
				t.Fatal(err)
			}
			ds = append(ds, d)
		}
		return ds
	}
	const rounds = 300
	_ = latencies(20) // warm globex's worker
	idle := latencies(rounds)

	// acme's four expensive queries, each started again as soon as it
	// ends, while globex's latency is measured again.
	heavy := `SELECT o.code, count(DISTINCT o.patient_id), avg(o.value_quantity) FROM observation o JOIN observation b ON b.patient_id = o.patient_id AND b.code = '8867-4' GROUP BY 1 ORDER BY 2 DESC LIMIT 5`
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var heavyRuns, heavyErrs int
	var mu sync.Mutex
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, err := ask("acme", heavy)
				mu.Lock()
				heavyRuns++
				if err != nil {
					heavyErrs++
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(2 * time.Second)
	loaded := latencies(rounds)
	rss := workerRSS(srv.Process.Pid)
	stop()
	wg.Wait()

	qi, ql := quantiles(idle), quantiles(loaded)
	fmt.Fprintf(&b, "globex, %d requests of %q:\n", rounds, panel)
	fmt.Fprintf(&b, "  alone:               p50 %s ms, p99 %s ms\n", ms(qi[50]), ms(qi[99]))
	fmt.Fprintf(&b, "  beside acme's load:  p50 %s ms, p99 %s ms (p99 %.2f× alone)\n", ms(ql[50]), ms(ql[99]), float64(ql[99])/float64(qi[99]))
	fmt.Fprintf(&b, "  acme ran %d expensive queries meanwhile (%d failed)\n", heavyRuns, heavyErrs)
	fmt.Fprintf(&b, "worker peak RSS (VmHWM) under load: %s (cap %s each)\n", rss, config.DefaultServe().WorkerMemoryLimit)
	t.Log(b.String())
}

func envOrDefault(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitHealthy(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("serve did not become healthy")
}

// children are the pids whose parent is pid.
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces, so read after ")".
		fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}

func waitNoWorker(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(children(pid)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the workers did not stop when idle")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// workerRSS is each worker's VmHWM.
func workerRSS(pid int) string {
	var parts []string
	for _, c := range children(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if strings.HasPrefix(line, "VmHWM:") {
				parts = append(parts, fmt.Sprintf("pid %d %s", c, strings.Join(strings.Fields(line)[1:], " ")))
			}
		}
	}
	return strings.Join(parts, ", ")
}

// quantiles returns the 50th, 99th and 100th percentiles of ds.
func quantiles(ds []time.Duration) map[int]time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(p int) time.Duration { return s[min(len(s)-1, len(s)*p/100)] }
	return map[int]time.Duration{50: at(50), 99: at(99), 100: s[len(s)-1]}
}
