package worker

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"fhirlake/query"
	"fhirlake/query/web"
	"fhirlake/sandbox"
)

// Options configure a Supervisor.
type Options struct {
	// Command starts a worker: the binary and its arguments (the hidden
	// subcommand). Required.
	Command []string
	// Env is the whole environment of a worker; the front's own, which
	// may hold every tenant's credentials, is never passed on.
	Env []string
	// Dir is the supervisor's own directory (mode 0700): a socket and a
	// temp dir per worker. Required.
	Dir string
	// TempDir holds each worker's own temp dir (DuckDB's spill files).
	// Default: Dir.
	TempDir string
	// Spec is a tenant's Spec without Socket, Token and TempDir, which
	// the supervisor fills in; false for an unknown tenant.
	Spec func(tenant string) (Spec, bool)
	// MaxWorkers bounds the workers running at once; starting one more
	// stops the least recently used idle one. Default: 16.
	MaxWorkers int
	// IdleTimeout stops a worker without a request for this long.
	// Default: 5m.
	IdleTimeout time.Duration
	// Grace is how long a worker has to stop after SIGTERM before it is
	// killed, and how long a request may run on after the front gave up on
	// it. Default: 5s.
	Grace time.Duration
	// Limits bound each worker's memory and CPU share.
	Limits sandbox.Limits
	// Cgroups places workers; nil: no memory or CPU bound.
	Cgroups *sandbox.Cgroups
	// Connections and MaxQueued are each tenant's queue in the front: at
	// most Connections requests forwarded at once, at most MaxQueued
	// waiting. Defaults: 4, 16.
	Connections, MaxQueued int
	// StartTimeout bounds a worker's start, up to "ready". Default: 30s.
	StartTimeout time.Duration
	// Credentials, if set, gives a tenant's worker credentials of its own
	// when it starts (variables added to its Spec's Env), called outside
	// the supervisor's lock: an assumed role's temporary key, never the
	// identity that assumes it. A worker whose credentials expire within
	// CredentialMargin takes no new request; it stops once idle, and the
	// next request starts one with new credentials.
	Credentials func(ctx context.Context, tenant string) (Credentials, error)
	// CredentialMargin: see Credentials. Default: 5m.
	CredentialMargin time.Duration
}

// Credentials are a worker's own: Env is added to its Spec's, Expires is
// when they stop working (zero: never).
type Credentials struct {
	Env     map[string]string
	Expires time.Time
}

// Supervisor runs a worker per tenant in use and forwards requests to it.
type Supervisor struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics

	mu      sync.Mutex
	workers map[string]*proc
	queues  map[string]*query.Queue
	closed  bool
	wg      sync.WaitGroup // one per worker's wait goroutine, plus the janitor
	stop    chan struct{}
}

// proc is one worker process.
type proc struct {
	tenant  string
	cmd     *exec.Cmd
	socket  string
	tempDir string
	token   string
	proxy   *httputil.ReverseProxy
	ready   chan struct{} // closed once it listens or has failed to
	readyOK bool
	exited  chan struct{} // closed once it has exited and been cleaned up
	exitErr error
	started time.Time
	// expires is when its credentials do (zero: never).
	expires time.Time

	// under Supervisor.mu
	inflight int
	lastUsed time.Time
	stopping bool
}

// WorkerStatus is one running worker, for the status and tests.
type WorkerStatus struct {
	Tenant   string    `json:"tenant"`
	PID      int       `json:"pid"`
	InFlight int       `json:"in_flight"`
	Started  time.Time `json:"started"`
	LastUsed time.Time `json:"last_used"`
}

// New returns a supervisor; Close stops its workers.
func New(o Options, reg prometheus.Registerer, log *slog.Logger) *Supervisor {
	if o.MaxWorkers <= 0 {
		o.MaxWorkers = 16
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.Grace <= 0 {
		o.Grace = 5 * time.Second
	}
	if o.Connections <= 0 {
		o.Connections = 4
	}
	if o.MaxQueued <= 0 {
		o.MaxQueued = 16
	}
	if o.TempDir == "" {
		o.TempDir = o.Dir
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 30 * time.Second
	}
	if o.CredentialMargin <= 0 {
		o.CredentialMargin = 5 * time.Minute
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Supervisor{opts: o, log: log, metrics: newMetrics(reg), workers: map[string]*proc{}, queues: map[string]*query.Queue{}, stop: make(chan struct{})}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.janitor() }()
	return s
}

// Forward implements web.Forwarder: it waits for one of the tenant's
// slots, then serves r with the tenant's worker, starting one if none
// runs.
func (s *Supervisor) Forward(w http.ResponseWriter, r *http.Request, tenant string) error {
	ctx := r.Context()
	q, err := s.queue(tenant)
	if err != nil {
		return err
	}
	leave, err := q.Enter(ctx)
	if err != nil {
		return err
	}
	defer leave()
	p, err := s.acquire(ctx, tenant)
	if err != nil {
		return err
	}
	defer s.release(p)
	var proxyErr error
	out := r.Clone(context.WithValue(ctx, proxyErrKey{}, &proxyErr))
	out.Header.Del("X-API-Key")
	out.Header.Set("Authorization", "Bearer "+p.token)
	out.Header.Set(web.RequestIDHeader, w.Header().Get(web.RequestIDHeader))
	p.proxy.ServeHTTP(w, out)
	if proxyErr == nil {
		if ctx.Err() != nil {
			// Given up on mid-stream: the worker's DuckDB was interrupted.
			s.checkAbandoned(p)
		}
		return nil
	}
	if ctx.Err() != nil {
		s.checkAbandoned(p)
		return fmt.Errorf("forward: %w", context.Cause(ctx))
	}
	select {
	case <-p.exited:
	case <-time.After(100 * time.Millisecond):
	}
	return fmt.Errorf("%w: %w", web.ErrWorkerRestarting, proxyErr)
}

type proxyErrKey struct{}

// checkAbandoned kills p if, a grace period (and a little) after the
// front gave up on a request, the worker still runs a request whose
// context ended, or does not say: its own watchdog should have ended it.
func (s *Supervisor) checkAbandoned(p *proc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTimer(s.opts.Grace + s.opts.Grace/2)
		defer t.Stop()
		select {
		case <-p.exited:
			return
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, err := p.abandoned(ctx)
		if err == nil && n == 0 {
			return
		}
		s.log.Warn("worker still runs a request given up on past the grace period; killing it", "tenant", p.tenant, "pid", p.cmd.Process.Pid, "abandoned", n, "err", err)
		_ = p.cmd.Process.Kill()
	}()
}

// abandoned asks the worker how many requests it runs whose context ended.
func (p *proc) abandoned(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://worker/_worker/abandoned", nil)
	if err != nil {
		return 0, err
	}
	resp, err := p.proxy.Transport.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var n int
	if _, err := fmt.Fscan(resp.Body, &n); err != nil {
		return 0, fmt.Errorf("read the worker's answer: %w", err)
	}
	return n, nil
}

func (s *Supervisor) queue(tenant string) (*query.Queue, error) {
	if _, ok := s.opts.Spec(tenant); !ok {
		return nil, query.ErrUnknownTenant
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.queues[tenant]
	if !ok {
		q = query.NewQueue(s.opts.Connections, s.opts.MaxQueued)
		s.queues[tenant] = q
	}
	return q, nil
}

// errBusy is a start refused because MaxWorkers workers all have requests.
var errBusy = errors.New("every worker is busy")

// acquire returns the tenant's running worker, counting the request in
// it, or starts one.
func (s *Supervisor) acquire(ctx context.Context, tenant string) (*proc, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: the server is stopping", web.ErrWorkerRestarting)
	}
	p, ok := s.workers[tenant]
	if !ok {
		var creds Credentials
		if s.opts.Credentials != nil {
			// Fetching them may take a round trip to STS: not under the lock.
			s.mu.Unlock()
			var err error
			if creds, err = s.opts.Credentials(ctx, tenant); err != nil {
				return nil, fmt.Errorf("tenant %s: credentials: %w", tenant, err)
			}
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				return nil, fmt.Errorf("%w: the server is stopping", web.ErrWorkerRestarting)
			}
			p, ok = s.workers[tenant]
		}
		if !ok {
			if len(s.workers) >= s.opts.MaxWorkers && !s.evictLocked() {
				s.mu.Unlock()
				return nil, fmt.Errorf("%w: %w", web.ErrWorkerRestarting, errBusy)
			}
			var err error
			if p, err = s.startLocked(tenant, creds); err != nil {
				s.mu.Unlock()
				return nil, err
			}
		}
	}
	p.inflight++
	p.lastUsed = time.Now()
	s.mu.Unlock()
	select {
	case <-p.ready:
	case <-ctx.Done():
		s.release(p)
		return nil, fmt.Errorf("start worker: %w", context.Cause(ctx))
	}
	if !p.readyOK {
		s.release(p)
		return nil, fmt.Errorf("%w: start: %w", web.ErrWorkerRestarting, p.exitErr)
	}
	return p, nil
}

func (s *Supervisor) release(p *proc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.inflight--
	p.lastUsed = time.Now()
	if p.inflight == 0 && s.workers[p.tenant] != p && !p.stopping {
		// Retired (its credentials expire soon) while it had requests.
		s.stopLocked(p)
	}
}

// evictLocked stops the least recently used worker without a request in
// flight; false if every worker has one.
func (s *Supervisor) evictLocked() bool {
	var lru *proc
	for _, p := range s.workers {
		if p.inflight == 0 && (lru == nil || p.lastUsed.Before(lru.lastUsed)) {
			lru = p
		}
	}
	if lru == nil {
		return false
	}
	s.log.Info("stopping the least recently used worker", "tenant", lru.tenant, "pid", lru.cmd.Process.Pid)
	s.metrics.evicted.Inc()
	s.stopLocked(lru)
	return true
}

// stopLocked takes p out of service and stops it: SIGTERM, then SIGKILL
// after the grace period. Its wait goroutine cleans up.
func (s *Supervisor) stopLocked(p *proc) {
	if s.workers[p.tenant] == p {
		delete(s.workers, p.tenant)
	}
	if p.stopping {
		return
	}
	p.stopping = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM) // fails only once it has exited
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTimer(s.opts.Grace)
		defer t.Stop()
		select {
		case <-p.exited:
		case <-t.C:
			s.log.Warn("worker did not stop within the grace period; killing it", "tenant", p.tenant, "pid", p.cmd.Process.Pid)
			_ = p.cmd.Process.Kill()
		}
	}()
}

// startLocked starts the tenant's worker; it becomes ready (or fails)
// later, closing p.ready.
func (s *Supervisor) startLocked(tenant string, creds Credentials) (*proc, error) {
	spec, ok := s.opts.Spec(tenant)
	if !ok {
		return nil, query.ErrUnknownTenant
	}
	if len(creds.Env) > 0 {
		env := make(map[string]string, len(spec.Env)+len(creds.Env))
		for k, v := range spec.Env {
			env[k] = v
		}
		for k, v := range creds.Env {
			env[k] = v
		}
		spec.Env = env
	}
	b := make([]byte, 8)
	rand.Read(b) // never fails
	id := tenant + "-" + hex.EncodeToString(b)
	tok := make([]byte, 32)
	rand.Read(tok)
	// A Unix socket's path is short: the id's random part names it.
	spec.Socket = filepath.Join(s.opts.Dir, hex.EncodeToString(b)+".sock")
	spec.TempDir = filepath.Join(s.opts.TempDir, id)
	spec.Token = hex.EncodeToString(tok)
	spec.Grace = s.opts.Grace
	p := &proc{tenant: tenant, socket: spec.Socket, tempDir: spec.TempDir, token: spec.Token, ready: make(chan struct{}), exited: make(chan struct{}),
		started: time.Now(), lastUsed: time.Now(), expires: creds.Expires}
	cmd := exec.Command(s.opts.Command[0], s.opts.Command[1:]...)
	cmd.Env = s.opts.Env
	cmd.Stderr = os.Stderr
	// The kernel ends a worker whose front died, so no worker outlives it.
	// A group of its own: a terminal's ^C reaches the front, which stops
	// the workers in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start: %w", web.ErrWorkerRestarting, err)
	}
	p.cmd = cmd
	// Bound it before it reads its spec, so that everything of the tenant
	// is charged to its own cgroup.
	releaseCg := func() {}
	if s.opts.Cgroups != nil {
		releaseCg, err = s.opts.Cgroups.Limit(cmd.Process.Pid, id, s.opts.Limits)
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			releaseCg()
			return nil, fmt.Errorf("start worker: %w", err)
		}
	}
	p.proxy = s.newProxy(p)
	s.workers[tenant] = p
	s.metrics.started.Inc()
	s.metrics.running.Set(float64(len(s.workers)))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := json.NewEncoder(stdin).Encode(spec)
		if cerr := stdin.Close(); err == nil {
			err = cerr
		}
		startTimer := time.AfterFunc(s.opts.StartTimeout, func() { _ = cmd.Process.Kill() })
		line, rerr := bufio.NewReader(stdout).ReadString('\n')
		startTimer.Stop()
		if err == nil && rerr != nil {
			err = fmt.Errorf("no ready line: %w", rerr)
		}
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("unexpected %q instead of the ready line", line)
		}
		p.readyOK, p.exitErr = err == nil, err
		if !p.readyOK {
			_ = cmd.Process.Kill()
		}
		close(p.ready)
		// A worker writes nothing after its ready line.
		werr := cmd.Wait()
		s.exitedProc(p, werr, releaseCg)
	}()
	return p, nil
}

// exitedProc cleans up after p's process exited.
func (s *Supervisor) exitedProc(p *proc, err error, releaseCg func()) {
	releaseCg()
	_ = os.Remove(p.socket)
	_ = os.RemoveAll(p.tempDir)
	s.mu.Lock()
	stopping := p.stopping
	if s.workers[p.tenant] == p {
		delete(s.workers, p.tenant)
	}
	s.metrics.running.Set(float64(len(s.workers)))
	s.mu.Unlock()
	reason := "stopped"
	if !stopping {
		reason = "crashed"
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
				reason = "killed"
			}
		}
		s.log.Error("worker exited", "tenant", p.tenant, "pid", p.cmd.Process.Pid, "reason", reason, "err", err)
	} else {
		s.log.Debug("worker stopped", "tenant", p.tenant, "pid", p.cmd.Process.Pid)
	}
	s.metrics.exits.WithLabelValues(reason).Inc()
	close(p.exited)
}

// newProxy forwards to p's socket, streaming the response as it comes.
func (s *Supervisor) newProxy(p *proc) *httputil.ReverseProxy {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p.socket)
		},
		MaxIdleConnsPerHost: s.opts.Connections,
		IdleConnTimeout:     time.Minute,
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "worker"
			pr.Out.Host = "worker"
		},
		Transport:     tr,
		FlushInterval: 50 * time.Millisecond,
		ModifyResponse: func(res *http.Response) error {
			// The front sets these itself.
			for _, h := range []string{web.RequestIDHeader, "X-Content-Type-Options", "Referrer-Policy", "Content-Security-Policy"} {
				res.Header.Del(h)
			}
			// The worker's report to the front, not declared to the client:
			// its values still arrive in res.Trailer, for the front's forward.
			delete(res.Trailer, web.RowsTrailer)
			delete(res.Trailer, web.ErrorCodeTrailer)
			return nil
		},
		ErrorHandler: func(_ http.ResponseWriter, r *http.Request, err error) {
			if e, ok := r.Context().Value(proxyErrKey{}).(*error); ok {
				*e = err
			}
		},
	}
}

// janitor stops idle workers.
func (s *Supervisor) janitor() {
	tick := time.NewTicker(max(min(s.opts.IdleTimeout, s.opts.CredentialMargin)/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-tick.C:
			s.mu.Lock()
			for _, p := range s.workers {
				if !p.expires.IsZero() && now.After(p.expires.Add(-s.opts.CredentialMargin)) {
					// New requests start a worker with new credentials; this
					// one stops once its requests are done (release).
					s.log.Info("retiring a worker whose credentials expire soon", "tenant", p.tenant, "pid", p.cmd.Process.Pid, "expires", p.expires)
					s.metrics.retired.Inc()
					delete(s.workers, p.tenant)
					if p.inflight == 0 {
						s.stopLocked(p)
					}
					continue
				}
				if p.inflight == 0 && now.Sub(p.lastUsed) >= s.opts.IdleTimeout {
					s.log.Info("stopping an idle worker", "tenant", p.tenant, "pid", p.cmd.Process.Pid)
					s.metrics.idle.Inc()
					s.stopLocked(p)
				}
			}
			s.mu.Unlock()
		}
	}
}

// Status lists the running workers by tenant.
func (s *Supervisor) Status() []WorkerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]WorkerStatus, 0, len(s.workers))
	for _, p := range s.workers {
		out = append(out, WorkerStatus{Tenant: p.tenant, PID: p.cmd.Process.Pid, InFlight: p.inflight, Started: p.started, LastUsed: p.lastUsed})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tenant < out[j].Tenant })
	return out
}

// Close stops every worker (SIGTERM, SIGKILL after the grace period) and
// waits for them.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	for _, p := range s.workers {
		s.stopLocked(p)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

type metrics struct {
	running                prometheus.Gauge
	started, evicted, idle prometheus.Counter
	retired                prometheus.Counter
	exits                  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		running: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fhirlake_query_workers", Help: "Tenant query workers running."}),
		started: prometheus.NewCounter(prometheus.CounterOpts{Name: "fhirlake_query_worker_starts_total", Help: "Tenant query workers started."}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{Name: "fhirlake_query_worker_evictions_total", Help: "Idle workers stopped to stay within serve.max_workers."}),
		idle:    prometheus.NewCounter(prometheus.CounterOpts{Name: "fhirlake_query_worker_idle_stops_total", Help: "Workers stopped after serve.worker_idle_timeout without a request."}),
		retired: prometheus.NewCounter(prometheus.CounterOpts{Name: "fhirlake_query_worker_retirements_total", Help: "Workers retired because their temporary credentials expire soon (a new one takes the next request)."}),
		exits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fhirlake_query_worker_exits_total",
			Help: "Worker exits by reason: stopped (by the front), killed (SIGKILL: memory cap or grace), crashed."}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.running, m.started, m.evicted, m.idle, m.retired, m.exits)
	}
	return m
}
