package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"fhirlake/config"
	"fhirlake/query"
	"fhirlake/query/querytest"
	"fhirlake/query/web"
	"fhirlake/sandbox"
)

// TestMain is also the worker: the supervisor under test starts this test
// binary with FHIRLAKE_WORKER_TEST=1.
func TestMain(m *testing.M) {
	if os.Getenv("FHIRLAKE_WORKER_TEST") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		err := Main(ctx, os.Stdin, os.Stdout, nil, log)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	acmeKey   = "acme-secret-key"
	globexKey = "globex-secret-key"
)

type fixture struct {
	base, acme, globex string
	sup                *Supervisor
	srv                *httptest.Server
	reg                *prometheus.Registry
}

func newFixture(t *testing.T, o Options, session query.Options, rawSQL bool) *fixture {
	t.Helper()
	f := &fixture{base: t.TempDir(), reg: prometheus.NewRegistry()}
	f.acme = filepath.Join(f.base, "acme")
	f.globex = filepath.Join(f.base, "globex")
	querytest.WriteRaw(t, f.acme, "acme", "t-0-0-0", []querytest.Row{{Type: "Patient", ID: "a1", Version: "1", Op: "upsert", Offset: 0}})
	querytest.WriteRaw(t, f.globex, "globex", "t-0-0-0", []querytest.Row{{Type: "Patient", ID: "g-secret", Version: "1", Op: "upsert", Offset: 0}})
	roots := map[string]string{"acme": f.acme, "globex": f.globex}
	run := filepath.Join(f.base, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	if session.QueryTimeout == 0 {
		session.QueryTimeout = 20 * time.Second
	}
	o.Command = []string{os.Args[0], "-test.run=^$"}
	o.Env = []string{"FHIRLAKE_WORKER_TEST=1"}
	o.Dir = run
	o.Spec = func(tenant string) (Spec, bool) {
		root, ok := roots[tenant]
		if !ok {
			return Spec{}, false
		}
		return Spec{Tenant: config.Tenant{Name: tenant, Store: config.Store{Type: "local", Path: root}}, Root: root,
			Session: session, RefreshInterval: time.Second, MaxResultRows: 1000, MaxRequestBytes: 64 << 10, RawSQLForTests: rawSQL}, true
	}
	f.sup = New(o, f.reg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	t.Cleanup(func() { f.sup.Close() })
	pool := query.NewPool([]query.Lake{{Tenant: "acme", Root: f.acme}, {Tenant: "globex", Root: f.globex}}, query.PoolOptions{}, nil, nil)
	t.Cleanup(func() { pool.Close() })
	front := web.New(pool, web.Options{
		Keys:         []web.Key{{Tenant: "acme", SHA256: config.HashAPIKey(acmeKey)}, {Tenant: "globex", SHA256: config.HashAPIKey(globexKey)}},
		QueryTimeout: session.QueryTimeout,
		Forward:      f.sup,
	}, nil, nil)
	f.srv = httptest.NewServer(front.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

// query runs sql as tenant through the front.
func (f *fixture) query(t *testing.T, tenant, sql string) (int, string) {
	t.Helper()
	key := map[string]string{"acme": acmeKey, "globex": globexKey}[tenant]
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/v1/tenants/"+tenant+"/query?format=csv", strings.NewReader(sql))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "read: " + err.Error()
	}
	return resp.StatusCode, string(b)
}

func (f *fixture) pid(tenant string) int {
	for _, w := range f.sup.Status() {
		if w.Tenant == tenant {
			return w.PID
		}
	}
	return 0
}

// watchGlobex queries globex every 50 ms until stop, failing the test on
// any failure or a reply slower than slow.
func (f *fixture) watchGlobex(t *testing.T, slow time.Duration) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			start := time.Now()
			code, body := f.query(t, "globex", "SELECT id FROM patient")
			if took := time.Since(start); code != http.StatusOK || !strings.Contains(body, "g-secret") || took > slow {
				t.Errorf("globex during acme's trouble: got %d %q in %s, want 200 with its row within %s", code, body, took, slow)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func TestForwardAnswersEachTenantFromItsOwnWorker(t *testing.T) {
	f := newFixture(t, Options{}, query.Options{}, false)
	for _, tenant := range []string{"acme", "globex"} {
		code, body := f.query(t, tenant, "SELECT id FROM patient")
		if code != http.StatusOK || strings.Contains(body, "g-secret") != (tenant == "globex") {
			t.Fatalf("%s: got %d %q", tenant, code, body)
		}
	}
	a, g := f.pid("acme"), f.pid("globex")
	if a == 0 || g == 0 || a == g || a == os.Getpid() {
		t.Fatalf("got worker pids acme %d globex %d (front %d), want two of their own", a, g, os.Getpid())
	}
}

func TestKilledWorkerFailsItsRequestAndRestarts(t *testing.T) {
	f := newFixture(t, Options{}, query.Options{}, false)
	if code, body := f.query(t, "globex", "SELECT id FROM patient"); code != http.StatusOK {
		t.Fatalf("globex: got %d %s", code, body)
	}
	if code, body := f.query(t, "acme", "SELECT id FROM patient"); code != http.StatusOK {
		t.Fatalf("acme: got %d %s", code, body)
	}
	old := f.pid("acme")
	stop := f.watchGlobex(t, 2*time.Second)
	defer stop()
	type result struct {
		code int
		body string
	}
	res := make(chan result, 1)
	go func() {
		code, body := f.query(t, "acme", "SELECT count(*) FROM range(100000000000) a")
		res <- result{code, body}
	}()
	time.Sleep(500 * time.Millisecond)
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.code < 500 {
		t.Fatalf("the killed worker's request: got %d %q, want 5xx", r.code, r.body)
	}
	code, body := f.query(t, "acme", "SELECT id FROM patient")
	if code != http.StatusOK || !strings.Contains(body, "a1") {
		t.Fatalf("acme after the kill: got %d %q", code, body)
	}
	if now := f.pid("acme"); now == 0 || now == old {
		t.Fatalf("acme's worker: got pid %d, want a new one (was %d)", now, old)
	}
	if got := testutil.ToFloat64(f.sup.metrics.exits.WithLabelValues("killed")); got != 1 {
		t.Errorf("killed exits: got %v, want 1", got)
	}
}

func TestMemoryCapKillsOnlyThatWorker(t *testing.T) {
	cg, err := sandbox.NewCgroups("fhirlake-test")
	if cg.Mechanism() == "rlimit" {
		t.Skipf("no writable memory cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := cg.Close(); err != nil {
			t.Error(err)
		}
	})
	f := newFixture(t, Options{Cgroups: cg, Limits: sandbox.Limits{Memory: 400 << 20}}, query.Options{MemoryLimit: "200MB"}, false)
	if code, body := f.query(t, "globex", "SELECT id FROM patient"); code != http.StatusOK {
		t.Fatalf("globex: got %d %s", code, body)
	}
	if code, body := f.query(t, "acme", "SELECT id FROM patient"); code != http.StatusOK {
		t.Fatalf("acme: got %d %s", code, body)
	}
	old := f.pid("acme")
	stop := f.watchGlobex(t, 2*time.Second)
	// DuckDB folds the constant while planning, outside its memory_limit.
	code, body := f.query(t, "acme", "SELECT len(range(200000000))")
	stop()
	if code < 500 {
		t.Fatalf("acme's query over the cap: got %d %q, want 5xx", code, body)
	}
	if got := testutil.ToFloat64(f.sup.metrics.exits.WithLabelValues("killed")); got != 1 {
		t.Errorf("killed exits: got %v, want 1", got)
	}
	if code, body := f.query(t, "acme", "SELECT id FROM patient"); code != http.StatusOK {
		t.Fatalf("acme after its worker's death: got %d %s", code, body)
	}
	if now := f.pid("acme"); now == old {
		t.Fatalf("acme's worker: got the same pid %d, want a new one", now)
	}
}
