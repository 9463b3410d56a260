package web

import (
	"context"
	"errors"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"fhirlake/lake"
	"fhirlake/query"
	"fhirlake/sink"
)

// snapshot is what the status shows of a batch snapshot: the last
// compaction.
type snapshot struct {
	ID        string    `json:"id"`
	Created   time.Time `json:"created"`
	Watermark time.Time `json:"watermark"`
	Models    int       `json:"models"`
	// DBTSeconds is how long the dbt build took.
	DBTSeconds float64 `json:"dbt_seconds"`
}

func snapshotJSON(m *lake.Manifest) *snapshot {
	if m == nil {
		return nil
	}
	return &snapshot{ID: m.SnapshotID, Created: m.Created.UTC(), Watermark: m.Watermark.Modified.UTC(), Models: len(m.Models), DBTSeconds: m.DBT.ElapsedSeconds}
}

type tenantJSON struct {
	query.TenantStatus
	Store string `json:"store"`
	// Compaction is the current batch snapshot, null before the first.
	Compaction *snapshot `json:"last_compaction"`
	// CompactionError says why the manifest could not be read.
	CompactionError string `json:"last_compaction_error,omitempty"`
}

type consumerJSON struct {
	// State is "ok" or "unknown" (Kafka not configured or not reachable).
	State string `json:"state"`
	*Lag
	Error string `json:"error,omitempty"`
}

// status serves GET /v1/status: every tenant's session, last compaction and
// the consumer lag. It shows names and times, never rows.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	var tenants []tenantJSON
	for _, st := range s.pool.Status() {
		t := tenantJSON{TenantStatus: st, Store: "local"}
		if l, ok := s.pool.Lake(st.Tenant); ok && l.Store != nil {
			t.Store = "s3"
		}
		m, err := s.manifest(r.Context(), st.Tenant)
		t.Compaction = snapshotJSON(m)
		if err != nil {
			t.CompactionError = err.Error()
		}
		tenants = append(tenants, t)
	}
	lag, err := s.lag(r.Context())
	c := consumerJSON{State: "ok", Lag: lag}
	if err != nil || lag == nil {
		c.State = "unknown"
		if err != nil {
			c.Error = err.Error()
		}
	}
	writeJSON(w, map[string]any{
		"tenants":  tenants,
		"consumer": c,
		"server":   map[string]any{"started": s.started.UTC(), "now": time.Now().UTC()},
	})
}

// tenantStatus serves GET /v1/status/tenants/{tenant}: the tenant's views
// and their freshness (no columns, no rows).
func (s *Server) tenantStatus(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if _, ok := s.pool.Lake(tenant); !ok {
		writeError(w, http.StatusNotFound, "unknown_tenant", "no tenant "+tenant)
		return
	}
	sess, release, ok := s.acquire(w, r, tenant)
	if !ok {
		return
	}
	defer release()
	infos, err := sess.Describe(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "describe_failed", err.Error())
		return
	}
	type view struct {
		Name         string          `json:"name"`
		Kind         string          `json:"kind"`
		Source       string          `json:"source"`
		ResourceType string          `json:"resource_type,omitempty"`
		Freshness    query.Freshness `json:"freshness"`
	}
	views := make([]view, 0, len(infos))
	for _, i := range infos {
		if i.Kind == "history" {
			continue
		}
		views = append(views, view{i.Name, i.Kind, i.Source, i.ResourceType, i.Freshness})
	}
	cat := sess.Catalog()
	writeJSON(w, map[string]any{
		"tenant":          tenant,
		"refreshed":       cat.Checked.UTC(),
		"last_compaction": snapshotJSON(cat.Snapshot),
		"speed_files":     cat.SpeedFiles,
		"views":           views,
	})
}

// manifest returns a tenant's current batch manifest: from its open
// session, else from its lake (for S3, one GET, remembered for 30 s).
func (s *Server) manifest(ctx context.Context, tenant string) (*lake.Manifest, error) {
	s.snapMu.Lock()
	c, ok := s.snaps[tenant]
	s.snapMu.Unlock()
	if ok && time.Since(c.at) < 30*time.Second {
		return c.m, c.err
	}
	l, _ := s.pool.Lake(tenant)
	var m *lake.Manifest
	var err error
	if l.Store == nil {
		m, err = lake.ReadManifest(os.DirFS(l.Root))
	} else {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		m, err = sink.ReadManifest(ctx, l.Store)
	}
	s.snapMu.Lock()
	s.snaps[tenant] = snapshotCache{at: time.Now(), m: m, err: err}
	s.snapMu.Unlock()
	return m, err
}

// lag asks the LagFunc at most every 5 s, with a 2 s budget.
func (s *Server) lag(ctx context.Context) (*Lag, error) {
	if s.opts.Lag == nil {
		return nil, errors.New("kafka is not configured")
	}
	s.lagMu.Lock()
	defer s.lagMu.Unlock()
	if !s.lagAt.IsZero() && time.Since(s.lagAt) < 5*time.Second {
		return s.lagVal, s.lagErr
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s.lagVal, s.lagErr = s.opts.Lag(ctx)
	s.lagAt = time.Now()
	return s.lagVal, s.lagErr
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	rows     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_query_requests_total",
			Help: "API requests by tenant (\"-\" when the path names no configured tenant), route and HTTP status.",
		}, []string{"tenant", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fhirlake_query_duration_seconds",
			Help:    "Time to answer a query request, refresh and response included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .15, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"tenant"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_query_rows_total",
			Help: "Rows returned by query requests.",
		}, []string{"tenant"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.rows)
	}
	return m
}
