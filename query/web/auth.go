package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"

	"fhirlake/query"
)

// Key is one tenant's API key, as the SHA-256 of the key.
type Key struct {
	Tenant string
	// SHA256 is the lowercase hex SHA-256 of the key.
	SHA256 string
	// Name labels the key in logs.
	Name string
}

// AdminKey opens the status of every tenant — names, views, freshness,
// compactions, lag — and no tenant's data.
type AdminKey struct {
	// SHA256 is the lowercase hex SHA-256 of the key.
	SHA256 string
	// Name labels the key in logs.
	Name string
}

// caller is who presented a key: a tenant's key or an admin key.
type caller struct {
	name   string
	tenant string // "" for an admin key
	admin  bool
}

// authenticate finds the key of r: a bearer token, else X-API-Key.
func (s *Server) authenticate(r *http.Request) (caller, bool) {
	var presented string
	if v := r.Header.Get("Authorization"); v != "" {
		scheme, token, ok := strings.Cut(v, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return caller{}, false
		}
		presented = strings.TrimSpace(token)
	} else {
		presented = strings.TrimSpace(r.Header.Get("X-API-Key"))
	}
	if presented == "" {
		return caller{}, false
	}
	// The maps are keyed by the digest, so lookup timing reveals nothing
	// about the key itself.
	sum := sha256.Sum256([]byte(presented))
	digest := hex.EncodeToString(sum[:])
	if k, ok := s.keys[digest]; ok {
		return caller{name: k.Name, tenant: k.Tenant}, true
	}
	if k, ok := s.admins[digest]; ok {
		return caller{name: k.Name, admin: true}, true
	}
	return caller{}, false
}

func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="fhirlake"`)
	s.fail(w, r, http.StatusUnauthorized, "unauthorized", "send an API key: Authorization: Bearer <key> (or X-API-Key)", nil)
}

// tenantRoute serves /v1/…/{tenant}/… to the tenant's own key (and, when
// admin is set, to an admin key): 401 without a known key, 403 when the key
// belongs to another tenant. Only then does the tenant's name matter, so a
// caller cannot probe which tenants exist, and nothing of a tenant is
// opened for a caller without its key. The handler runs within the query
// timeout, counted from here: waiting for a connection or for the session
// to open is part of it.
func (s *Server) tenantRoute(route string, admin bool, h func(w http.ResponseWriter, r *http.Request, tenant string) int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		if s.opts.ReportOutcome {
			sw.trailers = RowsTrailer + ", " + ErrorCodeTrailer
		}
		tenant := r.PathValue("tenant")
		label := s.label(tenant)
		rows := 0
		var c caller
		r, o := withOutcome(r)
		defer func() {
			s.metrics.requests.WithLabelValues(label, route, strconv.Itoa(sw.status)).Inc()
			if route == "query" {
				s.metrics.duration.WithLabelValues(label).Observe(time.Since(start).Seconds())
				s.metrics.rows.WithLabelValues(label).Add(float64(rows))
			}
			s.finish(sw, r, route, tenant, c, o, rows, start)
		}()
		c, ok := s.authenticate(r)
		switch {
		case !ok:
			s.unauthorized(sw, r)
			return
		case c.admin && !admin:
			s.fail(sw, r, http.StatusForbidden, "forbidden", "an admin key opens the status pages, not a tenant's data", nil)
			return
		case c.admin:
			if _, ok := s.pool.Lake(tenant); !ok {
				s.fail(sw, r, http.StatusNotFound, "unknown_tenant", "no such tenant", nil)
				return
			}
		case c.tenant != tenant:
			s.log.Warn("key used for another tenant", "request_id", requestID(r.Context()), "key", c.name, "key_tenant", c.tenant, "tenant", tenant, "remote", r.RemoteAddr)
			s.fail(sw, r, http.StatusForbidden, "forbidden", "this key does not open tenant "+strconv.Quote(tenant), nil)
			return
		}
		s.withCompleteness(sw, r, tenant)
		deadline := start.Add(s.opts.QueryTimeout)
		ctx, cancel := context.WithDeadlineCause(r.Context(), deadline, query.ErrQueryTimeout)
		defer cancel()
		// A client that stops reading would otherwise hold one of the
		// tenant's connections past the timeout: writes fail a moment after
		// it, time enough to send a 504. Not every ResponseWriter can.
		_ = http.NewResponseController(sw).SetWriteDeadline(deadline.Add(writeGrace))
		rows = h(sw, r.WithContext(ctx), tenant)
	}
}

// writeGrace is how long after the query timeout a response may still be
// written: the 504 of a query stopped by it.
const writeGrace = 2 * time.Second

// adminRoute serves a cross-tenant route to admin keys only.
func (s *Server) adminRoute(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, ok := s.authenticate(r)
		switch {
		case !ok:
			s.unauthorized(w, r)
		case !c.admin:
			s.fail(w, r, http.StatusForbidden, "forbidden", "the status of every tenant needs an admin key", nil)
		default:
			h(w, r)
		}
	}
}

// whoami serves GET /v1/whoami: what the presented key opens, so that a
// client (the status page) can check a key and find its tenant.
func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	c, ok := s.authenticate(r)
	if !ok {
		s.unauthorized(w, r)
		return
	}
	out := map[string]any{"admin": c.admin, "name": c.name}
	if !c.admin {
		out["tenant"] = c.tenant
	}
	writeJSON(w, out)
}

// label is the tenant label of the metrics for a request's tenant.
func (s *Server) label(tenant string) string {
	if !s.opts.TenantLabels {
		return query.AllTenants
	}
	if _, ok := s.pool.Lake(tenant); ok {
		return tenant
	}
	return "-"
}
