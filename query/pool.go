package query

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"fhirlake/sink"
)

// Lake is where a tenant's files are queried from.
type Lake struct {
	Tenant string
	// Root is the local directory its session reads, when the lake is not
	// on S3.
	Root string
	// Store and S3, when set, are the tenant's bucket: Store lists it and
	// reads its manifest with the tenant's credentials, DuckDB reads its
	// files directly with the key in S3 (OpenS3). Root is then unused.
	Store sink.Store
	S3    *S3Access
}

// PoolOptions configure a Pool. Zero values mean the documented defaults.
type PoolOptions struct {
	// Session bounds every session.
	Session Options
	// MaxSessions bounds the sessions kept open; beyond it the least
	// recently used one is closed once its queries finish. Default: 16.
	MaxSessions int
	// RefreshInterval is how often, at most, Acquire first brings the
	// tenant's session up to date (a listing of the lake, then the views if
	// it changed). Default: 2s.
	RefreshInterval time.Duration
	// IdleAfter: KeepFresh stops refreshing a session not used for this
	// long (it is refreshed again by its next request). Default: ten
	// RefreshIntervals, at least a minute.
	IdleAfter time.Duration
	// MaxQueued bounds the requests of one tenant that wait in Acquire for
	// one of its Session.Connections (requests hold one from Acquire to
	// release); beyond it Acquire fails at once with ErrQueueFull. A request
	// waits, for a connection or for its session to open, only as long as
	// its context allows. Default: 0, no bound.
	MaxQueued int
	// TenantLabels labels the metrics with tenant names. Without it every
	// tenant's series is labelled tenant="*" (AllTenants), for a /metrics
	// that anyone may read. Default: false.
	TenantLabels bool
}

// AllTenants is the tenant label of every series when metrics carry no
// tenant names (PoolOptions.TenantLabels is false). No tenant is named so.
const AllTenants = "*"

// Pool keeps one session per tenant, opened on first use, refreshed at
// most every RefreshInterval, and bounded in number (least recently used
// out). It is safe for concurrent use.
type Pool struct {
	lakes   map[string]Lake
	queues  map[string]*Queue // per tenant, fixed at NewPool
	opts    PoolOptions
	metrics *Metrics
	log     *slog.Logger

	mu      sync.Mutex
	entries map[string]*entry
	lru     *list.List // of *entry, most recent first
	closed  bool
}

type entry struct {
	lake Lake
	elem *list.Element
	// refs, evicted and used are guarded by Pool.mu.
	refs    int
	evicted bool
	used    time.Time // last Acquire

	// mu serialises opening and refreshing the tenant's session.
	mu      lock
	s       *Session
	checked time.Time
	status  TenantStatus
	// cur and checkedAt mirror s and checked for readers that do not wait
	// for a refresh in progress.
	cur       atomic.Pointer[Session]
	checkedAt atomic.Int64 // Unix nanoseconds
}

func (e *entry) due(interval time.Duration) bool {
	return time.Since(time.Unix(0, e.checkedAt.Load())) >= interval
}

// TenantStatus is what the pool knows of a tenant's session.
type TenantStatus struct {
	Tenant string `json:"tenant"`
	Open   bool   `json:"open"`
	// Refreshed is when the session was last brought up to date; Error the
	// last refresh's failure, "" when it succeeded. A session whose refresh
	// failed keeps serving its previous views.
	Refreshed time.Time `json:"refreshed,omitzero"`
	Error     string    `json:"error,omitempty"`
	// Unreadable are the speed files the views leave out
	// (Catalog.Unreadable).
	Unreadable []UnreadableFile `json:"unreadable_files,omitempty"`
}

// NewPool returns a pool over the given lakes, with its metrics registered
// with reg (nil: nowhere).
func NewPool(lakes []Lake, o PoolOptions, reg prometheus.Registerer, log *slog.Logger) *Pool {
	if o.MaxSessions <= 0 {
		o.MaxSessions = 16
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = 2 * time.Second
	}
	if o.IdleAfter <= 0 {
		o.IdleAfter = max(time.Minute, 10*o.RefreshInterval)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pool{lakes: map[string]Lake{}, queues: map[string]*Queue{}, opts: o, metrics: NewMetrics(reg), log: log, entries: map[string]*entry{}, lru: list.New()}
	for _, l := range lakes {
		p.lakes[l.Tenant] = l
		p.queues[l.Tenant] = NewQueue(o.Session.withDefaults().Connections, o.MaxQueued)
	}
	return p
}

// ErrUnknownTenant is returned for a tenant the pool does not serve.
var ErrUnknownTenant = errors.New("unknown tenant")

// Tenants are the tenants the pool serves, sorted.
func (p *Pool) Tenants() []string {
	out := make([]string, 0, len(p.lakes))
	for t := range p.lakes {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Lake returns a tenant's lake.
func (p *Pool) Lake(tenant string) (Lake, bool) {
	l, ok := p.lakes[tenant]
	return l, ok
}

// Acquire returns the tenant's session, opened or refreshed first when
// RefreshInterval has passed since the last refresh. release must be
// called once the session is no longer used. Acquire first waits its turn
// among the tenant's requests (see PoolOptions.MaxQueued), until ctx ends.
func (p *Pool) Acquire(ctx context.Context, tenant string) (s *Session, release func(), err error) {
	lake, ok := p.lakes[tenant]
	if !ok {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownTenant, tenant)
	}
	leave, err := p.queues[tenant].Enter(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("tenant %s: %w", tenant, err)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		leave()
		return nil, nil, errors.New("query pool is closed")
	}
	e := p.entries[tenant]
	if e == nil {
		e = &entry{lake: lake, status: TenantStatus{Tenant: tenant}}
		e.elem = p.lru.PushFront(e)
		p.entries[tenant] = e
	} else {
		p.lru.MoveToFront(e.elem)
	}
	e.refs++
	e.used = time.Now()
	p.mu.Unlock()
	release = func() { p.release(e); leave() }

	s, err = p.refresh(ctx, e)
	if err != nil {
		release()
		return nil, nil, err
	}
	p.evict()
	return s, release, nil
}

// refresh opens or refreshes e's session when due. A failed refresh of an
// open session is logged and the session keeps its views: a dashboard
// rather sees data a few seconds old than an error while S3 is away. While
// another request or KeepFresh is refreshing an open session, the session
// is returned at once with its current views rather than after the rebuild.
func (p *Pool) refresh(ctx context.Context, e *entry) (*Session, error) {
	return p.refreshAfter(ctx, e, p.opts.RefreshInterval)
}

// refreshAfter is refresh with the age at which a session is due.
func (p *Pool) refreshAfter(ctx context.Context, e *entry, interval time.Duration) (*Session, error) {
	if s := e.cur.Load(); s != nil {
		if !e.due(interval) || !e.mu.TryLock() {
			return s, nil
		}
	} else if err := e.mu.LockContext(ctx); err != nil {
		// Another request is opening the session; this one's time is up.
		return nil, fmt.Errorf("wait for the session: %w", err)
	}
	defer e.mu.Unlock()
	if e.s != nil && !e.due(interval) {
		return e.s, nil
	}
	tenant := e.lake.Tenant
	var err error
	if e.s == nil {
		var s *Session
		if s, err = p.open(ctx, e.lake); err == nil {
			e.s = s
			e.cur.Store(s)
			p.metrics.rebuilds.WithLabelValues(p.label(tenant)).Inc()
		}
	} else {
		var changed bool
		if changed, err = e.s.Refresh(ctx); changed {
			p.metrics.rebuilds.WithLabelValues(p.label(tenant)).Inc()
		}
	}
	e.checked = time.Now()
	e.checkedAt.Store(e.checked.UnixNano())
	if err != nil {
		p.metrics.refreshErrors.WithLabelValues(p.label(tenant)).Inc()
		e.status.Error = err.Error()
		if e.s == nil {
			return nil, err
		}
		p.log.Warn("refresh failed; serving the previous views", "tenant", tenant, "err", err)
		return e.s, nil
	}
	e.status.Error, e.status.Refreshed, e.status.Open = "", e.checked, true
	p.noteUnreadable(e)
	return e.s, nil
}

// noteUnreadable logs the files e's views newly leave out, with the error
// that set each aside, and counts them.
func (p *Pool) noteUnreadable(e *entry) {
	cat := e.s.Catalog()
	if cat == nil {
		return
	}
	was := map[string]bool{}
	for _, u := range e.status.Unreadable {
		was[u.Key] = true
	}
	for _, u := range cat.Unreadable {
		if !was[u.Key] {
			p.log.Warn("a speed file cannot be read as its dataset's; the views leave it out", "tenant", e.lake.Tenant, "key", u.Key, "err", u.Err())
		}
	}
	e.status.Unreadable = cat.Unreadable
	p.metrics.unreadable.WithLabelValues(p.label(e.lake.Tenant)).Set(float64(len(cat.Unreadable)))
}

// open opens the session of a lake: on S3 through httpfs, else in its
// directory.
func (p *Pool) open(ctx context.Context, l Lake) (*Session, error) {
	if l.S3 != nil {
		return OpenS3(ctx, l.Tenant, l.Store, *l.S3, p.opts.Session)
	}
	if err := Exists(l.Root); err != nil {
		return nil, err
	}
	return Open(ctx, l.Tenant, l.Root, p.opts.Session)
}

// label is the tenant label of the pool's metrics for tenant.
func (p *Pool) label(tenant string) string {
	if p.opts.TenantLabels {
		return tenant
	}
	return AllTenants
}

func (p *Pool) release(e *entry) {
	p.mu.Lock()
	e.refs--
	closeNow := e.evicted && e.refs == 0
	p.mu.Unlock()
	if closeNow {
		p.closeEntry(e)
	}
}

// evict closes the least recently used sessions beyond MaxSessions (at
// once when unused, else when their last query ends).
func (p *Pool) evict() {
	var closeNow []*entry
	p.mu.Lock()
	for p.lru.Len() > p.opts.MaxSessions {
		e := p.lru.Remove(p.lru.Back()).(*entry)
		delete(p.entries, e.lake.Tenant)
		e.evicted = true
		if e.refs == 0 {
			closeNow = append(closeNow, e)
		}
	}
	p.metrics.sessions.Set(float64(p.lru.Len()))
	p.mu.Unlock()
	for _, e := range closeNow {
		p.closeEntry(e)
	}
}

func (p *Pool) closeEntry(e *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.s != nil {
		if err := e.s.Close(); err != nil {
			p.log.Warn("close session", "tenant", e.lake.Tenant, "err", err)
		}
		e.s = nil
		e.cur.Store(nil)
	}
}

// KeepFresh refreshes the open sessions used within IdleAfter whenever
// half a RefreshInterval has passed since their last refresh, so that
// requests seldom find one due and wait for a listing of the lake or a
// rebuild of the views: the next request after a change of the lake finds them built.
// It returns when ctx is done; `fhirlake serve` runs it.
func (p *Pool) KeepFresh(ctx context.Context) {
	t := time.NewTicker(max(p.opts.RefreshInterval/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, e := range p.recent() {
			if ctx.Err() == nil {
				if _, err := p.refreshAfter(ctx, e, p.opts.RefreshInterval/2); err != nil {
					p.log.Warn("background refresh", "tenant", e.lake.Tenant, "err", err)
				}
			}
			p.release(e)
		}
	}
}

// recent returns the open sessions used within IdleAfter, each with a
// reference taken (release it).
func (p *Pool) recent() []*entry {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*entry
	for el := p.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*entry)
		if e.evicted || e.cur.Load() == nil || time.Since(e.used) > p.opts.IdleAfter {
			continue
		}
		e.refs++
		out = append(out, e)
	}
	return out
}

// Status reports every tenant's session, sorted by tenant.
func (p *Pool) Status() []TenantStatus {
	p.mu.Lock()
	entries := make(map[string]*entry, len(p.entries))
	for k, v := range p.entries {
		entries[k] = v
	}
	p.mu.Unlock()
	var out []TenantStatus
	for _, t := range p.Tenants() {
		st := TenantStatus{Tenant: t}
		if e := entries[t]; e != nil && e.mu.TryLock() {
			st = e.status
			st.Open = e.s != nil
			e.mu.Unlock()
		} else if e != nil {
			st.Open = true // busy refreshing
		}
		out = append(out, st)
	}
	return out
}

// Close closes every session; sessions in use close when released.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	var closeNow []*entry
	for e := p.lru.Front(); e != nil; e = e.Next() {
		en := e.Value.(*entry)
		en.evicted = true
		if en.refs == 0 {
			closeNow = append(closeNow, en)
		}
	}
	p.lru.Init()
	clear(p.entries)
	p.mu.Unlock()
	for _, e := range closeNow {
		p.closeEntry(e)
	}
	return nil
}

// Metrics are the query layer's Prometheus metrics.
type Metrics struct {
	rebuilds      *prometheus.CounterVec
	refreshErrors *prometheus.CounterVec
	unreadable    *prometheus.GaugeVec
	sessions      prometheus.Gauge
}

// NewMetrics builds the metrics and registers them with reg (nil: nowhere).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_query_view_builds_total",
			Help: "Times a tenant's views were built because its lake changed.",
		}, []string{"tenant"}),
		refreshErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_query_refresh_errors_total",
			Help: "Failed refreshes of a tenant's views (a listing of its lake, then the build); the previous views kept serving.",
		}, []string{"tenant"}),
		unreadable: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fhirlake_query_unreadable_files",
			Help: "Speed files a tenant's views leave out because they cannot be read as their dataset's (listed on the tenant's status page).",
		}, []string{"tenant"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fhirlake_query_sessions",
			Help: "Tenant sessions open.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.rebuilds, m.refreshErrors, m.unreadable, m.sessions)
	}
	return m
}
