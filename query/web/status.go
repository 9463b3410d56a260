package web

import (
	"context"
	"errors"
	"net/http"
	"os"
	"time"

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
	// Completeness is the time through which the tenant's lake is
	// complete, and its snapshot's watermark.
	Completeness completenessJSON `json:"completeness"`
}

type consumerJSON struct {
	// State is "ok" or "unknown" (Kafka not configured or not reachable).
	State string `json:"state"`
	*Lag
	Error string `json:"error,omitempty"`
}

// status serves GET /v1/status to admin keys: every tenant's session, last
// compaction and the consumer lag. It shows names, counts and times, never
// rows; nor errors, which quote paths, SQL and broker addresses: those are
// in the server log.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	var tenants []tenantJSON
	for _, st := range s.pool.Status() {
		t := tenantJSON{TenantStatus: st, Store: "local"}
		if st.Error != "" {
			t.Error = "the last refresh failed; the server log says why"
		}
		if l, ok := s.pool.Lake(st.Tenant); ok && l.Store != nil {
			t.Store = "s3"
		}
		m, err := s.manifest(r.Context(), st.Tenant)
		t.Compaction = snapshotJSON(m)
		if err != nil {
			t.CompactionError = "the manifest cannot be read; the server log says why"
		}
		t.Completeness = s.completenessOf(r, st.Tenant, m)
		tenants = append(tenants, t)
	}
	lag, err := s.lag(r.Context())
	c := consumerJSON{State: "ok", Lag: lag}
	switch {
	case s.opts.Lag == nil:
		c.State, c.Error = "unknown", "kafka is not configured"
	case err != nil || lag == nil:
		c.State, c.Error = "unknown", "the lag cannot be read; the server log says why"
	}
	writeJSON(w, map[string]any{
		"tenants":  tenants,
		"consumer": c,
		"server":   map[string]any{"started": s.started.UTC(), "now": time.Now().UTC()},
	})
}

// tenantStatus serves GET /v1/status/tenants/{tenant} to the tenant's key
// and admin keys: the tenant's views and their freshness (no columns, no
// rows).
func (s *Server) tenantStatus(w http.ResponseWriter, r *http.Request, tenant string) int {
	sess, release, ok := s.acquire(w, r, tenant)
	if !ok {
		return 0
	}
	defer release()
	infos, ok := s.describe(w, r, sess)
	if !ok {
		return 0
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
		"completeness":    s.completenessOf(r, tenant, cat.Snapshot),
		"speed_files":     cat.SpeedFiles,
		"views":           views,
		// The files the views leave out, by key and reason.
		"unreadable_files": cat.Unreadable,
	})
	return 0
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
	if err != nil {
		s.log.Warn("read the batch manifest for the status", "tenant", tenant, "err", err)
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
	if s.lagErr != nil {
		s.log.Info("read the consumer lag for the status", "err", s.lagErr)
	}
	return s.lagVal, s.lagErr
}
