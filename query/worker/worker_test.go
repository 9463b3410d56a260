package worker

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
	"fhirlake/sink"
)

// TestMain is also the worker: the supervisor under test starts this test
// binary with FHIRLAKE_WORKER_TEST=1.
func TestMain(m *testing.M) {
	if os.Getenv("FHIRLAKE_WORKER_TEST") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		err := Main(ctx, os.Stdin, os.Stdout, testOpenStore, log)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testOpenStore opens an S3 tenant's bucket with its static key, as serve
// does.
func testOpenStore(ctx context.Context, t config.Tenant) (sink.Store, error) {
	return sink.NewS3(ctx, sink.S3Options{Bucket: t.Store.Bucket, Prefix: t.Store.Prefix, Endpoint: t.Store.Endpoint, Region: t.Store.Region,
		PathStyle: t.Store.PathStyle, AccessKey: os.Getenv(t.Store.AccessKeyEnv), SecretKey: os.Getenv(t.Store.SecretKeyEnv)})
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
	front              *query.Pool // the front's, for the lakes and status
}

// newFixture serves acme and globex through a front whose supervisor runs
// this test binary as their workers; edit, if not nil, changes each spec.
func newFixture(t *testing.T, o Options, session query.Options, edit func(*Spec)) *fixture {
	t.Helper()
	return newFrontFixture(t, o, session, edit, web.Options{})
}

// newFrontFixture is newFixture with the front's options (its keys, query
// timeout and forwarder are the fixture's).
func newFrontFixture(t *testing.T, o Options, session query.Options, edit func(*Spec), fo web.Options) *fixture {
	t.Helper()
	f := &fixture{base: t.TempDir(), reg: prometheus.NewRegistry()}
	f.acme = filepath.Join(f.base, "acme")
	f.globex = filepath.Join(f.base, "globex")
	querytest.WriteRaw(t, f.acme, "acme", "t-0-0-0", []querytest.Row{{Type: "Patient", ID: "a1", Version: "1", Op: "upsert", Offset: 0}})
	querytest.WriteRaw(t, f.globex, "globex", "t-0-0-0", []querytest.Row{{Type: "Patient", ID: "g-secret", Version: "1", Op: "upsert", Offset: 0}})
	roots := map[string]string{"acme": f.acme, "globex": f.globex}
	// A Unix socket's path has at most 107 bytes: t.TempDir's can be longer.
	run, err := os.MkdirTemp("", "flw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
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
		spec := Spec{Tenant: config.Tenant{Name: tenant, Store: config.Store{Type: "local", Path: root}}, Root: root,
			Session: session, RefreshInterval: time.Second, MaxResultRows: 1000, MaxRequestBytes: 64 << 10}
		if edit != nil {
			edit(&spec)
		}
		return spec, true
	}
	f.sup = New(o, f.reg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	t.Cleanup(func() { f.sup.Close() })
	pool := query.NewPool([]query.Lake{{Tenant: "acme", Root: f.acme}, {Tenant: "globex", Root: f.globex}}, query.PoolOptions{}, nil, nil)
	t.Cleanup(func() { pool.Close() })
	f.front = pool
	fo.Keys = []web.Key{{Tenant: "acme", SHA256: config.HashAPIKey(acmeKey)}, {Tenant: "globex", SHA256: config.HashAPIKey(globexKey)}}
	fo.QueryTimeout = session.QueryTimeout
	fo.Forward = f.sup
	front := web.New(pool, fo, nil, nil)
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

// start has tenant's worker answer a query, starting one if none runs,
// and returns its pid. It asks the supervisor directly, without the front's
// query timeout: a worker's cold start (its process, DuckDB, the views) is
// not what the tests of a short timeout are about, and on a loaded machine
// it takes longer than their second. Such a test also gives its workers a
// timeout of their own that a cold start fits in (patientWorkers).
func (f *fixture) start(t *testing.T, tenant string) int {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/v1/tenants/"+tenant+"/query?format=csv", strings.NewReader("SELECT id FROM patient"))
	r.Header.Set("Content-Type", "text/plain")
	w := httptest.NewRecorder()
	if err := f.sup.Forward(w, r, tenant); err != nil {
		t.Fatalf("%s's worker: %v", tenant, err)
	}
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), map[string]string{"acme": "a1", "globex": "g-secret"}[tenant]) {
		t.Fatalf("%s's worker: got %d %q, want 200 with its row", tenant, w.Code, w.Body)
	}
	return f.pid(tenant)
}

// patientWorkers gives the workers a query timeout of a minute, whatever
// the front's, for start; edit, if not nil, changes the spec further. The
// front's timeout still ends a request: cancelled by it, the worker's
// request is as good as timed out (its watchdog watches that cancellation).
func patientWorkers(edit func(*Spec)) func(*Spec) {
	return func(s *Spec) {
		s.Session.QueryTimeout = time.Minute
		if edit != nil {
			edit(s)
		}
	}
}

// waitExits waits until the supervisor has counted n exits of its workers,
// whatever their reason, and returns them by reason. An exit is counted
// once the front has reaped the process and taken it out of service, so a
// request after it starts a new worker rather than meet the dead one (which
// answers 503 worker_restarting). It fails the test after a minute.
func (f *fixture) waitExits(t *testing.T, n int) map[string]int {
	t.Helper()
	count := func() (map[string]int, int) {
		by, total := map[string]int{}, 0
		for _, r := range []string{"stopped", "killed", "crashed"} {
			by[r] = int(testutil.ToFloat64(f.sup.metrics.exits.WithLabelValues(r)))
			total += by[r]
		}
		return by, total
	}
	deadline := time.Now().Add(time.Minute)
	for {
		by, total := count()
		if total >= n {
			return by
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers' exits: got %v, want %d", by, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// watchGlobex queries globex every 50 ms until stop (called once or more),
// failing the test on
// any reply but its row. Its worker must run already (start): what a
// client sees of a cold start depends on the machine's load, not on acme.
// The workers' isolation is that every reply is globex's row and that
// globex's worker outlives acme's trouble (the caller compares its pid); a
// reply's time is the machine's, and is not checked.
func (f *fixture) watchGlobex(t *testing.T) (stop func()) {
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
			if code, body := f.query(t, "globex", "SELECT id FROM patient"); code != http.StatusOK || !strings.Contains(body, "g-secret") {
				t.Errorf("globex during acme's trouble: got %d %q, want 200 with its row", code, body)
			}
		}
	})
	return sync.OnceFunc(func() { close(done); wg.Wait() })
}

func TestForwardAnswersEachTenantFromItsOwnWorker(t *testing.T) {
	f := newFixture(t, Options{}, query.Options{}, nil)
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
	f := newFixture(t, Options{}, query.Options{}, nil)
	globex := f.start(t, "globex")
	old := f.start(t, "acme")
	stop := f.watchGlobex(t)
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
	if exits := f.waitExits(t, 1); exits["killed"] != 1 {
		t.Errorf("exits: got %v, want acme's worker killed", exits)
	}
	code, body := f.query(t, "acme", "SELECT id FROM patient")
	if code != http.StatusOK || !strings.Contains(body, "a1") {
		t.Fatalf("acme after the kill: got %d %q", code, body)
	}
	if now := f.pid("acme"); now == 0 || now == old {
		t.Fatalf("acme's worker: got pid %d, want a new one (was %d)", now, old)
	}
	stop()
	if now := f.pid("globex"); now != globex {
		t.Errorf("globex's worker: got pid %d, want %d still", now, globex)
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
	f := newFixture(t, Options{Cgroups: cg, Limits: sandbox.Limits{Memory: 400 << 20}}, query.Options{MemoryLimit: "200MB"}, nil)
	globex := f.start(t, "globex")
	old := f.start(t, "acme")
	stop := f.watchGlobex(t)
	// DuckDB folds the constant while planning, outside its memory_limit.
	code, body := f.query(t, "acme", "SELECT len(range(200000000))")
	stop()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "worker_restarting") {
		t.Fatalf("acme's query over the cap: got %d %q, want 503 worker_restarting", code, body)
	}
	if exits := f.waitExits(t, 1); exits["killed"] != 1 {
		t.Errorf("exits: got %v, want acme's worker killed", exits)
	}
	if now := f.pid("globex"); now != globex {
		t.Errorf("globex's worker: got pid %d, want %d still", now, globex)
	}
	if code, body := f.query(t, "acme", "SELECT id FROM patient"); code != http.StatusOK {
		t.Fatalf("acme after its worker's death: got %d %s", code, body)
	}
	if now := f.pid("acme"); now == old {
		t.Fatalf("acme's worker: got the same pid %d, want a new one", now)
	}
}

// rawSQL runs sql on a DuckDB of acme's worker without the session's
// checks or settings (Spec.RawSQLForTests).
func (f *fixture) rawSQL(t *testing.T, tenant, sql string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/test/raw-sql", strings.NewReader(sql))
	w := httptest.NewRecorder()
	if err := f.sup.Forward(w, r, tenant); err != nil {
		t.Fatal(err)
	}
	return w.Code, w.Body.String()
}

func TestLandlockConfinesAWorkerToItsLake(t *testing.T) {
	if sandbox.LandlockABI() == 0 {
		t.Skip("no Landlock in this kernel")
	}
	f := newFixture(t, Options{}, query.Options{}, func(s *Spec) { s.RawSQLForTests = true })
	file := filepath.Join("speed", "resources", "date=2026-01-01", "t-0-0-0.parquet")
	if code, body := f.rawSQL(t, "acme", fmt.Sprintf("SELECT count(*) FROM read_parquet('%s')", filepath.Join(f.acme, file))); code != http.StatusOK || strings.TrimSpace(body) != "1" {
		t.Fatalf("acme reading its own lake: got %d %q, want 200 1", code, body)
	}
	code, body := f.rawSQL(t, "acme", fmt.Sprintf("SELECT count(*) FROM read_parquet('%s')", filepath.Join(f.globex, file)))
	if code == http.StatusOK || !strings.Contains(body, "ermission denied") {
		t.Errorf("acme reading globex's lake: got %d %q, want a permission error", code, body)
	}
	escape := filepath.Join(f.base, "escape.csv")
	code, body = f.rawSQL(t, "acme", fmt.Sprintf("COPY (SELECT 1 AS x) TO '%s'", escape))
	if code == http.StatusOK || !strings.Contains(body, "ermission denied") {
		t.Errorf("acme writing outside its temp dir: got %d %q, want a permission error", code, body)
	}
	if _, err := os.Stat(escape); err == nil {
		t.Errorf("%s exists: the worker wrote outside its temp dir", escape)
	}
	code, body = f.rawSQL(t, "acme", fmt.Sprintf("COPY (SELECT 1 AS x) TO '%s'", filepath.Join(f.acme, "planted.csv")))
	if code == http.StatusOK {
		t.Errorf("acme writing into its own lake: got %d %q, want it refused (read-only)", code, body)
	}
}

func TestIdleWorkersStopAndMaxWorkersEvictsTheLeastRecentlyUsed(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		f := newFixture(t, Options{IdleTimeout: 300 * time.Millisecond}, query.Options{}, nil)
		if code, body := f.query(t, "acme", "SELECT id FROM patient"); code != http.StatusOK {
			t.Fatalf("acme: got %d %s", code, body)
		}
		if f.pid("acme") == 0 {
			t.Fatal("no acme worker after its request")
		}
		deadline := time.Now().Add(5 * time.Second)
		for f.pid("acme") != 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if pid := f.pid("acme"); pid != 0 {
			t.Fatalf("acme's worker %d still runs after its idle timeout", pid)
		}
		if got := testutil.ToFloat64(f.sup.metrics.idle); got != 1 {
			t.Errorf("idle stops: got %v, want 1", got)
		}
	})
	t.Run("max_workers", func(t *testing.T) {
		f := newFixture(t, Options{MaxWorkers: 1}, query.Options{}, nil)
		for _, tenant := range []string{"acme", "globex"} {
			if code, body := f.query(t, tenant, "SELECT id FROM patient"); code != http.StatusOK {
				t.Fatalf("%s: got %d %s", tenant, code, body)
			}
		}
		st := f.sup.Status()
		if len(st) != 1 || st[0].Tenant != "globex" {
			t.Fatalf("workers: got %+v, want globex's alone", st)
		}
		if got := testutil.ToFloat64(f.sup.metrics.evicted); got != 1 {
			t.Errorf("evictions: got %v, want 1", got)
		}
	})
	t.Run("busy workers are not evicted", func(t *testing.T) {
		f := newFixture(t, Options{MaxWorkers: 1}, query.Options{}, nil)
		res := make(chan int, 1)
		go func() {
			code, _ := f.query(t, "acme", "SELECT count(*) FROM range(100000000000) a")
			res <- code
		}()
		deadline := time.Now().Add(5 * time.Second)
		for (len(f.sup.Status()) == 0 || f.sup.Status()[0].InFlight == 0) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if code, body := f.query(t, "globex", "SELECT id FROM patient"); code != http.StatusServiceUnavailable {
			t.Errorf("globex while acme's only worker is busy: got %d %s, want 503", code, body)
		}
		if st := f.sup.Status(); len(st) != 1 || st[0].Tenant != "acme" {
			t.Errorf("workers: got %+v, want acme's still", st)
		}
		f.srv.CloseClientConnections()
		<-res
	})
}

// TestAWorkerThatIgnoresTheTimeoutIsReplaced: the front answers 504 at
// its one-second timeout while acme's worker is stuck in planning; the
// worker's watchdog ends it (exit 3) a grace period later, a new worker
// serves acme, and globex is answered throughout by its own worker. The
// front's own check comes half a grace period after the watchdog's exit: a
// grace of a second leaves the worker half a second to be seen exiting
// first, where a loaded machine can delay it by more than 150 ms.
func TestAWorkerThatIgnoresTheTimeoutIsReplaced(t *testing.T) {
	f := newFixture(t, Options{Grace: time.Second}, query.Options{QueryTimeout: time.Second}, patientWorkers(nil))
	old := f.start(t, "acme")
	globex := f.start(t, "globex")
	stop := f.watchGlobex(t)
	defer stop()
	// DuckDB folds the constant while planning and heeds no interrupt.
	code, body := f.query(t, "acme", "SELECT len(range(30000000))")
	if code != http.StatusGatewayTimeout || !strings.Contains(body, "query_timeout") {
		t.Fatalf("acme's endless planning: got %d %q, want 504 query_timeout", code, body)
	}
	if exits := f.waitExits(t, 1); exits["crashed"] != 1 {
		t.Fatalf("the stuck worker's exits: got %v, want it ended by its own watchdog (crashed)", exits)
	}
	if now := f.start(t, "acme"); now == old {
		t.Fatalf("acme after: answered by pid %d still, want a new worker", now)
	}
	stop()
	if now := f.pid("globex"); now != globex {
		t.Errorf("globex's worker: got pid %d, want %d still", now, globex)
	}
}

func TestTheFrontKillsAWorkerStuckPastTheGracePeriod(t *testing.T) {
	f := newFixture(t, Options{Grace: 300 * time.Millisecond}, query.Options{QueryTimeout: time.Second}, patientWorkers(func(s *Spec) { s.NoWatchdogForTests = true }))
	old := f.start(t, "acme")
	if code, body := f.query(t, "acme", "SELECT len(range(30000000))"); code != http.StatusGatewayTimeout {
		t.Fatalf("acme's endless planning: got %d %q, want 504", code, body)
	}
	if exits := f.waitExits(t, 1); exits["killed"] != 1 {
		t.Fatalf("the stuck worker's exits: got %v, want it killed by the front", exits)
	}
	if now := f.start(t, "acme"); now == old {
		t.Fatalf("acme after: answered by pid %d still, want a new worker", now)
	}
}

func TestTheFrontOpensNoTenantSession(t *testing.T) {
	f := newFixture(t, Options{}, query.Options{}, nil)
	for _, path := range []string{"/v1/tenants/acme/tables", "/v1/status/tenants/acme"} {
		req, err := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+acmeKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "patient") {
			t.Errorf("%s: got %d %s, want 200 with the views", path, resp.StatusCode, b)
		}
	}
	for _, st := range f.front.Status() {
		if st.Open {
			t.Errorf("the front opened %s's session", st.Tenant)
		}
	}
	if f.pid("acme") == 0 {
		t.Error("no acme worker answered")
	}
}

// TestASlowRequestBodyHoldsNoSlot sends half a statement and stalls: with
// one slot for acme, another acme query is still answered, and the slow
// one is answered once its body is complete.
func TestASlowRequestBodyHoldsNoSlot(t *testing.T) {
	f := newFixture(t, Options{Connections: 1, MaxQueued: 1}, query.Options{}, nil)
	sql := "SELECT id FROM patient"
	conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/tenants/acme/query?format=csv HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", acmeKey, len(sql), sql[:7])
	time.Sleep(300 * time.Millisecond) // the front has the headers and waits for the rest
	for i := range 3 {
		if code, body := f.query(t, "acme", "SELECT id FROM patient"); code != http.StatusOK || !strings.Contains(body, "a1") {
			t.Fatalf("query %d beside a stalled body: %d %s", i, code, body)
		}
	}
	if _, err := io.WriteString(conn, sql[7:]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "a1") {
		t.Errorf("the slow request: %d %s", resp.StatusCode, b)
	}
}

// TestTheWorkerShowsTheFrontsCompleteness: the front reads Kafka, the
// worker does not; a tenant's /tables, answered by its worker, shows the
// front's completeness, and a client's own completeness header never
// reaches the worker.
func TestTheWorkerShowsTheFrontsCompleteness(t *testing.T) {
	checked := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := checked.Add(-time.Minute)
	tables := func(f *fixture) (http.Header, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, f.srv.URL+"/v1/tenants/acme/tables", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+acmeKey)
		req.Header.Set(web.CompleteThroughHeader, "2099-01-01T00:00:00Z")
		req.Header.Set(web.CompleteCheckedHeader, "2099-01-01T00:00:00Z")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("tables: got %d %s %v", resp.StatusCode, b, err)
		}
		return resp.Header, string(b)
	}
	f := newFrontFixture(t, Options{}, query.Options{}, nil, web.Options{Completeness: func() web.Completeness {
		return web.Completeness{Checked: checked, Through: map[string]time.Time{"acme": at}}
	}})
	hdr, body := tables(f)
	want := `"complete_through": "` + at.Format(time.RFC3339Nano) + `"`
	if !strings.Contains(body, want) || !strings.Contains(body, `"checked": "`+checked.Format(time.RFC3339Nano)+`"`) {
		t.Errorf("tables through the worker: got %s, want %s", body, want)
	}
	if got := hdr.Values(web.CompleteThroughHeader); len(got) != 1 || got[0] != at.Format(time.RFC3339Nano) {
		t.Errorf("header %s: got %q, want the front's, once", web.CompleteThroughHeader, got)
	}

	// A front without Kafka: the worker is told nothing, whatever the
	// client sent.
	f = newFixture(t, Options{}, query.Options{}, nil)
	if hdr, body := tables(f); strings.Contains(body, "2099") || !strings.Contains(body, "kafka is not configured") || hdr.Get(web.CompleteThroughHeader) != "" {
		t.Errorf("front without kafka: got %s, headers %v; want unknown, not the client's time", body, hdr)
	}
}

// TestAWorkerIsRetiredBeforeItsCredentialsExpire: a worker whose temporary
// credentials expire within the margin takes no new request; the next one
// starts a worker with new credentials, every request is answered, and the
// old worker stops.
func TestAWorkerIsRetiredBeforeItsCredentialsExpire(t *testing.T) {
	var handed atomic.Int32
	f := newFixture(t, Options{
		CredentialMargin: 400 * time.Millisecond,
		Credentials: func(context.Context, string) (Credentials, error) {
			handed.Add(1)
			return Credentials{Env: map[string]string{"FHIRLAKE_WORKER_TEST_TOKEN": "t"}, Expires: time.Now().Add(1200 * time.Millisecond)}, nil
		},
	}, query.Options{}, nil)
	if code, body := f.query(t, "acme", "SELECT id FROM patient"); code != http.StatusOK {
		t.Fatalf("first query: %d %s", code, body)
	}
	// Counted by the supervisor, not by pid: on a loaded machine the first
	// worker can be retired before its first answer, when its pid is no
	// longer listed.
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(f.sup.metrics.started) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the first worker still serves past its credentials' margin")
		}
		if code, body := f.query(t, "acme", "SELECT id FROM patient"); code != http.StatusOK || !strings.Contains(body, "a1") {
			t.Fatalf("a query while the worker is retired: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if exits := f.waitExits(t, 1); exits["stopped"] < 1 || exits["killed"]+exits["crashed"] != 0 {
		t.Fatalf("exits: got %v, want the retired worker stopped", exits)
	}
	if handed.Load() < 2 {
		t.Errorf("credentials handed %d times, want one per worker started", handed.Load())
	}
}
