// Package web serves the query layer over HTTP: SQL per tenant behind
// per-tenant API keys, each tenant's views with their freshness, a status
// page, an OpenAPI document, /metrics and /healthz.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"fhirlake/audit"
	"fhirlake/lake"
	"fhirlake/query"
)

//go:embed assets openapi.json
var files embed.FS

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
	// Keys open one tenant each.
	Keys []Key
	// AdminKeys open the status of every tenant (/v1/status and each
	// /v1/status/tenants/{tenant}), never a tenant's data. Without any,
	// /v1/status is off; a tenant's status still opens to its own key.
	AdminKeys []AdminKey
	// MaxRequestBytes bounds a query request's body. Default: 64KiB.
	MaxRequestBytes int64
	// MaxResultRows cuts results beyond it. Default: 1000000.
	MaxResultRows int
	// MaxResultBytes cuts results beyond about this many bytes (checked
	// between rows). Default: 512MiB.
	MaxResultBytes int64
	// QueryTimeout bounds every request to a tenant's session from its
	// arrival: waiting its turn and for the session to open, parsing,
	// planning, execution and the response. Default: 30s.
	QueryTimeout time.Duration
	// DisableStatus turns off the status page, /v1/status and
	// /v1/status/tenants/{tenant}.
	DisableStatus bool
	// TenantLabels labels the request metrics with tenant names. /metrics
	// needs no key, so by default every request is counted under
	// tenant="*" (query.AllTenants).
	TenantLabels bool
	// Lag reports the consumer lag on the status page; nil: unknown.
	Lag LagFunc
	// Completeness reports the time through which each tenant's lake is
	// complete, for /tables, the status routes, the CompleteThroughHeader
	// of every tenant response and fhirlake_lake_complete_through_seconds;
	// nil: Kafka is not configured.
	Completeness CompletenessFunc
	// Gatherer serves /metrics; nil: no /metrics.
	Gatherer prometheus.Gatherer
	// Forward, when set, serves the query, tables and tenant status routes
	// once the key is checked: the front authenticates, a worker opens the
	// tenant's DuckDB and runs the SQL; the front opens none.
	Forward Forwarder
	// TrustRequestID takes a request's id from its RequestIDHeader, as a
	// worker does from its front, instead of making one. Never set it on
	// a server that clients reach.
	TrustRequestID bool
	// TrustCompleteness takes the tenant's completeness from the request's
	// CompleteThroughHeader and CompleteCheckedHeader, as a worker does
	// from its front. Never set it on a server that clients reach.
	TrustCompleteness bool
	// Audit writes a record of every tenant request (query, tables,
	// status); nil: none. A worker has none: its front writes them.
	Audit *audit.Writer
	// ReportOutcome ends every tenant response with the rows returned and
	// the error code answered, in trailers its front reads for its audit
	// record and metrics (see rowsTrailer), as a worker does.
	ReportOutcome bool
}

// Server is the HTTP API over a query.Pool.
type Server struct {
	pool    *query.Pool
	opts    Options
	keys    map[string]Key            // SHA-256 hex → key
	admins  map[string]AdminKey       // SHA-256 hex → key
	roots   map[string]*regexp.Regexp // tenant → its lake root, see rootPattern
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
	if o.MaxResultBytes <= 0 {
		o.MaxResultBytes = 512 << 20
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = 30 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{pool: pool, opts: o, keys: map[string]Key{}, admins: map[string]AdminKey{}, roots: map[string]*regexp.Regexp{},
		metrics: newMetrics(reg), log: log, started: time.Now(), snaps: map[string]snapshotCache{}}
	for _, k := range o.Keys {
		s.keys[strings.ToLower(k.SHA256)] = k
	}
	for _, k := range o.AdminKeys {
		s.admins[strings.ToLower(k.SHA256)] = k
	}
	for _, t := range pool.Tenants() {
		l, _ := pool.Lake(t)
		s.roots[t] = rootPattern(l.Root)
	}
	if o.Completeness != nil && reg != nil {
		reg.MustRegister(newCompletenessCollector(o.Completeness, pool.Tenants(), o.TenantLabels))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /openapi.json", s.openapi)
	if o.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /v1/whoami", s.whoami)
	if o.Forward != nil {
		mux.HandleFunc("POST /v1/tenants/{tenant}/query", s.tenantRoute("query", false, s.forward))
		mux.HandleFunc("GET /v1/tenants/{tenant}/tables", s.tenantRoute("tables", false, s.forward))
		mux.HandleFunc("POST /v1/tenants/{tenant}/parameters", s.tenantRoute("parameters", false, s.forward))
	} else {
		mux.HandleFunc("POST /v1/tenants/{tenant}/query", s.tenantRoute("query", false, s.query))
		mux.HandleFunc("GET /v1/tenants/{tenant}/tables", s.tenantRoute("tables", false, s.tables))
		mux.HandleFunc("POST /v1/tenants/{tenant}/parameters", s.tenantRoute("parameters", false, s.parameters))
	}
	if !o.DisableStatus {
		assets, _ := fs.Sub(files, "assets")
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, assets, "index.html")
		})
		mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(assets)))
		if len(o.AdminKeys) > 0 {
			mux.HandleFunc("GET /v1/status", s.adminRoute(s.status))
		} else {
			mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
				s.fail(w, r, http.StatusNotFound, "not_found", "the status of every tenant is off: the server has no admin keys", nil)
			})
		}
		if o.Forward != nil {
			mux.HandleFunc("GET /v1/status/tenants/{tenant}", s.tenantRoute("status", true, s.forward))
		} else {
			mux.HandleFunc("GET /v1/status/tenants/{tenant}", s.tenantRoute("status", true, s.tenantStatus))
		}
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("no such endpoint: %s %s (see /openapi.json)", r.Method, r.URL.Path), nil)
	})
	s.handler = securityHeaders(withRequestID(mux, o.TrustRequestID))
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

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // a failed write means the client has gone
}

// statusWriter remembers the status code and counts the body's bytes, for
// the metrics and the audit record.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
	bytes  int64
	// trailers are declared as the header is written, whatever the handler
	// declared: a worker's report to its front (Options.ReportOutcome).
	trailers string
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
		if w.trailers != "" {
			w.Header().Add("Trailer", w.trailers)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets an http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// acquire waits for the tenant's session, answering 429 when too many of
// the tenant's requests wait already, 504 when the query timeout passes
// first, 503 when the lake cannot be read.
func (s *Server) acquire(w http.ResponseWriter, r *http.Request, tenant string) (*query.Session, func(), bool) {
	sess, release, err := s.pool.Acquire(r.Context(), tenant)
	if err != nil {
		s.sessionFailed(w, r, err)
		return nil, nil, false
	}
	return sess, release, true
}

// describe lists the session's views, answering the failure itself.
func (s *Server) describe(w http.ResponseWriter, r *http.Request, sess *query.Session) ([]query.TableInfo, bool) {
	infos, err := sess.Describe(r.Context())
	if err != nil {
		status, code := classifyDescribe(r, err)
		msg := "the views could not be listed; the server log has the cause under this request id"
		if code != "describe_failed" {
			msg = s.publicMessage(status, code, "", "", err)
		}
		s.fail(w, r, status, code, msg, err)
		return nil, false
	}
	return infos, true
}

func (s *Server) tables(w http.ResponseWriter, r *http.Request, tenant string) int {
	sess, release, ok := s.acquire(w, r, tenant)
	if !ok {
		return 0
	}
	defer release()
	infos, ok := s.describe(w, r, sess)
	if !ok {
		return 0
	}
	cat := sess.Catalog()
	writeJSON(w, map[string]any{
		"tenant":    tenant,
		"snapshot":  snapshotJSON(cat.Snapshot),
		"refreshed": cat.Checked.UTC(),
		// The time through which the lake is complete, beside the views'
		// freshness: what a result over the views can be missing.
		"completeness": s.completenessOf(r, tenant, cat.Snapshot),
		"tables":       infos,
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

// readSQL reads the statement: a JSON body {"sql": "...", "params": [...]},
// or the body as text (text/plain, application/sql), which has no
// parameters.
func (s *Server) readSQL(w http.ResponseWriter, r *http.Request) (string, []any, int, string) {
	body := http.MaxBytesReader(w, r.Body, s.opts.MaxRequestBytes)
	b, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return "", nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", s.opts.MaxRequestBytes)
		}
		return "", nil, http.StatusBadRequest, "read request: " + err.Error()
	}
	return parseSQL(b, r.Header.Get("Content-Type"))
}

// parseSQL finds the statement in a request's body of the given content type.
func parseSQL(b []byte, contentType string) (string, []any, int, string) {
	ct, _, _ := mime.ParseMediaType(contentType)
	var q string
	var args []any
	switch ct {
	case "application/json", "":
		var req struct {
			SQL    string            `json:"sql"`
			Params []json.RawMessage `json:"params"`
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return "", nil, http.StatusBadRequest, `body: want JSON {"sql": "SELECT …"}: ` + err.Error()
		}
		var err error
		if args, err = parseParams(req.Params); err != nil {
			return "", nil, http.StatusBadRequest, err.Error()
		}
		q = req.SQL
	case "text/plain", "application/sql":
		q = string(b)
	default:
		return "", nil, http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q: send application/json {\"sql\": …} or text/plain", ct)
	}
	if strings.TrimSpace(q) == "" {
		return "", nil, http.StatusBadRequest, "no SQL in the request"
	}
	return q, args, 0, ""
}

func (s *Server) query(w http.ResponseWriter, r *http.Request, tenant string) int {
	f, ok := negotiate(r)
	if !ok {
		s.fail(w, r, http.StatusNotAcceptable, "not_acceptable", "accepted: application/json, text/csv, application/vnd.apache.arrow.stream, application/vnd.apache.parquet (or ?format=json|csv|arrow|parquet)", nil)
		return 0
	}
	q, args, status, msg := s.readSQL(w, r)
	if status != 0 {
		code := "bad_request"
		switch status {
		case http.StatusRequestEntityTooLarge:
			code = "too_large"
		case http.StatusUnsupportedMediaType:
			code = "unsupported_media_type"
		}
		s.fail(w, r, status, code, msg, nil)
		return 0
	}
	outcomeOf(r.Context()).sql = q
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
	h.Set("Fhirlake-Byte-Limit", strconv.FormatInt(s.opts.MaxResultBytes, 10))
	// Either answers a failure itself, logged under the request id.
	if f.name == "json" {
		return s.queryJSON(w, r, sess, tenant, q, args)
	}
	return s.queryExport(w, r, sess, tenant, q, args, f)
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

func (s *Server) queryExport(w http.ResponseWriter, r *http.Request, sess *query.Session, tenant, q string, args []any, f format) int {
	lw := &lazyWriter{w: w, mime: f.mime}
	if f.name == "parquet" {
		w.Header().Set("Content-Disposition", `attachment; filename="result.parquet"`)
	}
	res, err := sess.Export(r.Context(), lw, q, f.name, query.ExportOptions{MaxRows: s.opts.MaxResultRows, MaxBytes: s.opts.MaxResultBytes, Args: args})
	if err != nil {
		if !lw.started {
			s.queryFailed(w, r, tenant, q, err)
		} else {
			e := s.failedMidStream(r, tenant, q, res.Rows, err)
			w.Header().Set("Fhirlake-Error", e.Code+": "+oneLine(e.Message))
		}
		return res.Rows
	}
	if !lw.started {
		// An empty CSV still gets its header from Export; other formats
		// write at least a schema. A failed write means the client has gone.
		_, _ = lw.Write(nil)
	}
	if res.Truncated {
		w.Header().Set("Fhirlake-Truncated", "true")
	}
	return res.Rows
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
