// Package web serves the query layer over HTTP: SQL per tenant behind
// per-tenant API keys, each tenant's views with their freshness, a status
// page, an OpenAPI document, /metrics and /healthz.
package web

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"fhirlake/lake"
	"fhirlake/query"
)

//go:embed assets openapi.json
var files embed.FS

// Key is one tenant's API key, as the SHA-256 of the key.
type Key struct {
	Tenant string
	// SHA256 is the lowercase hex SHA-256 of the key.
	SHA256 string
	// Name labels the key in logs.
	Name string
}

// LagFunc reports the consumer group's lag; an error means "unknown".
type LagFunc func(ctx context.Context) (*Lag, error)

// Lag is the consumer group's lag.
type Lag struct {
	Group  string   `json:"group"`
	Topics []string `json:"topics"`
	Total  int64    `json:"total"`
	// Partitions is the lag per topic/partition.
	Partitions []PartitionLag `json:"partitions"`
}

// PartitionLag is the lag of one partition.
type PartitionLag struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Lag       int64  `json:"lag"`
}

// Options configure a Server.
type Options struct {
	Keys []Key
	// MaxRequestBytes bounds a query request's body. Default: 64KiB.
	MaxRequestBytes int64
	// MaxResultRows cuts results beyond it. Default: 1000000.
	MaxResultRows int
	// DisableStatus turns off / and /v1/status.
	DisableStatus bool
	// Lag reports the consumer lag on the status page; nil: unknown.
	Lag LagFunc
	// Gatherer serves /metrics; nil: no /metrics.
	Gatherer prometheus.Gatherer
}

// Server is the HTTP API over a query.Pool.
type Server struct {
	pool    *query.Pool
	opts    Options
	keys    map[string]Key // SHA-256 hex → key
	metrics *metrics
	log     *slog.Logger
	started time.Time

	lagMu   sync.Mutex
	lagAt   time.Time
	lagVal  *Lag
	lagErr  error
	snapMu  sync.Mutex
	snaps   map[string]snapshotCache
	handler http.Handler
}

type snapshotCache struct {
	at  time.Time
	m   *lake.Manifest
	err error
}

// New returns a server over pool, with its metrics registered with reg
// (nil: nowhere).
func New(pool *query.Pool, o Options, reg prometheus.Registerer, log *slog.Logger) *Server {
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = 64 << 10
	}
	if o.MaxResultRows <= 0 {
		o.MaxResultRows = 1_000_000
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{pool: pool, opts: o, keys: map[string]Key{}, metrics: newMetrics(reg), log: log, started: time.Now(), snaps: map[string]snapshotCache{}}
	for _, k := range o.Keys {
		s.keys[strings.ToLower(k.SHA256)] = k
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /openapi.json", s.openapi)
	if o.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("POST /v1/tenants/{tenant}/query", s.tenantRoute("query", s.query))
	mux.HandleFunc("GET /v1/tenants/{tenant}/tables", s.tenantRoute("tables", s.tables))
	if !o.DisableStatus {
		assets, _ := fs.Sub(files, "assets")
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, assets, "index.html")
		})
		mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(assets)))
		mux.HandleFunc("GET /v1/status", s.status)
		mux.HandleFunc("GET /v1/status/tenants/{tenant}", s.tenantStatus)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no such endpoint: %s %s (see /openapi.json)", r.Method, r.URL.Path))
	})
	s.handler = securityHeaders(mux)
	return s
}

// Handler serves every route.
func (s *Server) Handler() http.Handler { return s.handler }

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) openapi(w http.ResponseWriter, _ *http.Request) {
	b, _ := files.ReadFile("openapi.json")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b) // a failed write means the client has gone
}

// apiError is the body of every error response.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var e apiError
	e.Error.Code, e.Error.Message = code, msg
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Disposition")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(e) // a failed write means the client has gone
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // a failed write means the client has gone
}

// statusWriter remembers the status code for the metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// tenantRoute authenticates a request for /v1/tenants/{tenant}/…: 401
// without a known key, 403 when the key belongs to another tenant. Only
// then does the tenant's name matter, so a caller cannot probe which
// tenants exist.
func (s *Server) tenantRoute(route string, h func(w http.ResponseWriter, r *http.Request, tenant string) int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		tenant := r.PathValue("tenant")
		label := "-"
		if _, ok := s.pool.Lake(tenant); ok {
			label = tenant
		}
		rows := 0
		defer func() {
			s.metrics.requests.WithLabelValues(label, route, strconv.Itoa(sw.status)).Inc()
			if route == "query" {
				s.metrics.duration.WithLabelValues(label).Observe(time.Since(start).Seconds())
				s.metrics.rows.WithLabelValues(label).Add(float64(rows))
			}
		}()
		key, ok := s.authenticate(r)
		if !ok {
			sw.Header().Set("WWW-Authenticate", `Bearer realm="fhirlake"`)
			writeError(sw, http.StatusUnauthorized, "unauthorized", "send a tenant API key: Authorization: Bearer <key> (or X-API-Key)")
			return
		}
		if key.Tenant != tenant {
			s.log.Warn("key used for another tenant", "key", key.Name, "key_tenant", key.Tenant, "tenant", tenant, "remote", r.RemoteAddr)
			writeError(sw, http.StatusForbidden, "forbidden", "this key does not open tenant "+strconv.Quote(tenant))
			return
		}
		rows = h(sw, r, tenant)
	}
}

func (s *Server) authenticate(r *http.Request) (Key, bool) {
	var presented string
	if v := r.Header.Get("Authorization"); v != "" {
		scheme, token, ok := strings.Cut(v, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return Key{}, false
		}
		presented = strings.TrimSpace(token)
	} else {
		presented = strings.TrimSpace(r.Header.Get("X-API-Key"))
	}
	if presented == "" {
		return Key{}, false
	}
	// The map is keyed by the digest, so lookup timing reveals nothing
	// about the key itself.
	sum := sha256.Sum256([]byte(presented))
	k, ok := s.keys[hex.EncodeToString(sum[:])]
	return k, ok
}

// acquire opens the tenant's session, answering 503 when the lake cannot
// be read.
func (s *Server) acquire(w http.ResponseWriter, r *http.Request, tenant string) (*query.Session, func(), bool) {
	sess, release, err := s.pool.Acquire(r.Context(), tenant)
	if err != nil {
		if errors.Is(err, query.ErrUnknownTenant) {
			writeError(w, http.StatusNotFound, "unknown_tenant", err.Error())
			return nil, nil, false
		}
		s.log.Error("open tenant session", "tenant", tenant, "err", err)
		writeError(w, http.StatusServiceUnavailable, "lake_unavailable", fmt.Sprintf("tenant %s: the lake cannot be read now: %v", tenant, err))
		return nil, nil, false
	}
	return sess, release, true
}

func (s *Server) tables(w http.ResponseWriter, r *http.Request, tenant string) int {
	sess, release, ok := s.acquire(w, r, tenant)
	if !ok {
		return 0
	}
	defer release()
	infos, err := sess.Describe(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "describe_failed", err.Error())
		return 0
	}
	cat := sess.Catalog()
	writeJSON(w, map[string]any{
		"tenant":    tenant,
		"snapshot":  snapshotJSON(cat.Snapshot),
		"refreshed": cat.Checked.UTC(),
		"tables":    infos,
	})
	return 0
}

// format is one response format of the query route.
type format struct {
	name, mime string
}

var formats = []format{
	{"json", "application/json"},
	{"csv", "text/csv"},
	{"arrow", "application/vnd.apache.arrow.stream"},
	{"parquet", "application/vnd.apache.parquet"},
}

// negotiate picks the response format: ?format= first, else the Accept
// header (in the client's order, */* meaning JSON), else JSON.
func negotiate(r *http.Request) (format, bool) {
	if f := r.URL.Query().Get("format"); f != "" {
		for _, c := range formats {
			if c.name == f {
				return c, true
			}
		}
		return format{}, false
	}
	accept := r.Header.Get("Accept")
	if strings.TrimSpace(accept) == "" {
		return formats[0], true
	}
	type choice struct {
		f format
		q float64
	}
	var best *choice
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			q, _ = strconv.ParseFloat(v, 64)
		}
		if q <= 0 {
			continue
		}
		var f format
		switch mt {
		case "*/*", "application/*", "application/json":
			f = formats[0]
		case "text/csv", "text/*":
			f = formats[1]
		case "application/vnd.apache.arrow.stream", "application/vnd.apache.arrow.file":
			f = formats[2]
		case "application/vnd.apache.parquet", "application/x-parquet":
			f = formats[3]
		default:
			continue
		}
		if best == nil || q > best.q {
			best = &choice{f, q}
		}
	}
	if best == nil {
		return format{}, false
	}
	return best.f, true
}

// readSQL reads the statement: a JSON body {"sql": "..."}, or the body as
// text (text/plain, application/sql).
func (s *Server) readSQL(w http.ResponseWriter, r *http.Request) (string, int, string) {
	body := http.MaxBytesReader(w, r.Body, s.opts.MaxRequestBytes)
	b, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return "", http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", s.opts.MaxRequestBytes)
		}
		return "", http.StatusBadRequest, "read request: " + err.Error()
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var q string
	switch ct {
	case "application/json", "":
		var req struct {
			SQL string `json:"sql"`
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return "", http.StatusBadRequest, `body: want JSON {"sql": "SELECT …"}: ` + err.Error()
		}
		q = req.SQL
	case "text/plain", "application/sql":
		q = string(b)
	default:
		return "", http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q: send application/json {\"sql\": …} or text/plain", ct)
	}
	if strings.TrimSpace(q) == "" {
		return "", http.StatusBadRequest, "no SQL in the request"
	}
	return q, 0, ""
}

func (s *Server) query(w http.ResponseWriter, r *http.Request, tenant string) int {
	f, ok := negotiate(r)
	if !ok {
		writeError(w, http.StatusNotAcceptable, "not_acceptable", "accepted: application/json, text/csv, application/vnd.apache.arrow.stream, application/vnd.apache.parquet (or ?format=json|csv|arrow|parquet)")
		return 0
	}
	q, status, msg := s.readSQL(w, r)
	if status != 0 {
		code := "bad_request"
		switch status {
		case http.StatusRequestEntityTooLarge:
			code = "too_large"
		case http.StatusUnsupportedMediaType:
			code = "unsupported_media_type"
		}
		writeError(w, status, code, msg)
		return 0
	}
	sess, release, ok := s.acquire(w, r, tenant)
	if !ok {
		return 0
	}
	defer release()
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if cat := sess.Catalog(); cat != nil {
		h.Set("Fhirlake-Refreshed", cat.Checked.UTC().Format(time.RFC3339Nano))
		if cat.Snapshot != nil {
			h.Set("Fhirlake-Snapshot", cat.Snapshot.SnapshotID)
		}
	}
	h.Set("Fhirlake-Row-Limit", strconv.Itoa(s.opts.MaxResultRows))
	var n int
	var err error
	switch f.name {
	case "json":
		n, err = s.queryJSON(w, r, sess, q)
	default:
		n, err = s.queryExport(w, r, sess, q, f)
	}
	if err != nil {
		s.log.Info("query failed", "tenant", tenant, "err", err)
	}
	return n
}

// lazyWriter sets the content type and status on the first write, so that
// an error before any output still gets a JSON error response.
type lazyWriter struct {
	w       http.ResponseWriter
	mime    string
	started bool
}

func (l *lazyWriter) Write(b []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", l.mime)
		l.w.Header().Set("Trailer", "Fhirlake-Truncated, Fhirlake-Error")
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(b)
}

func (s *Server) queryExport(w http.ResponseWriter, r *http.Request, sess *query.Session, q string, f format) (int, error) {
	lw := &lazyWriter{w: w, mime: f.mime}
	if f.name == "parquet" {
		w.Header().Set("Content-Disposition", `attachment; filename="result.parquet"`)
	}
	res, err := sess.Export(r.Context(), lw, q, f.name, query.ExportOptions{MaxRows: s.opts.MaxResultRows})
	if err != nil {
		if !lw.started {
			status, code := classify(err)
			writeError(w, status, code, err.Error())
		} else {
			w.Header().Set("Fhirlake-Error", oneLine(err.Error()))
		}
		return res.Rows, err
	}
	if !lw.started {
		// An empty CSV still gets its header from Export; other formats
		// write at least a schema. A failed write means the client has gone.
		_, _ = lw.Write(nil)
	}
	if res.Truncated {
		w.Header().Set("Fhirlake-Truncated", "true")
	}
	return res.Rows, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// classify maps a query error to an HTTP status and an error code.
func classify(err error) (int, string) {
	msg := err.Error()
	switch {
	case errors.Is(err, query.ErrQueryTimeout) || errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "query_timeout"
	case errors.Is(err, query.ErrNotReadOnly), errors.Is(err, query.ErrMultipleStatements):
		return http.StatusBadRequest, "statement_refused"
	case strings.Contains(msg, "Permission Error"), strings.Contains(msg, "disabled by configuration"),
		strings.Contains(msg, "configuration has been locked"):
		return http.StatusForbidden, "permission_denied"
	case errors.Is(err, context.Canceled):
		return 499, "canceled"
	case strings.Contains(msg, "Out of Memory Error"):
		return http.StatusInsufficientStorage, "out_of_memory"
	case strings.Contains(msg, "Parser Error"), strings.Contains(msg, "Binder Error"), strings.Contains(msg, "Catalog Error"),
		strings.Contains(msg, "Conversion Error"), strings.Contains(msg, "Invalid Input Error"), strings.Contains(msg, "empty statement"),
		strings.Contains(msg, "Not implemented Error"):
		return http.StatusBadRequest, "query_error"
	}
	return http.StatusInternalServerError, "query_failed"
}
