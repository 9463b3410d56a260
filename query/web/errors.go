package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/duckdb/duckdb-go/v2"

	"fhirlake/query"
)

// RequestIDHeader carries the id of every response; the server logs each
// failed request's full error under it.
const RequestIDHeader = "Fhirlake-Request-Id"

// apiError is the body of every error response.
type apiError struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

type requestIDKey struct{}

// withRequestID gives every request an id: in its context, and in the
// response's RequestIDHeader. The id is made here, never taken from the
// client, so that it can be trusted in the log — except behind a front
// (trust), which made it.
func withRequestID(h http.Handler, trust bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !trust || id == "" {
			b := make([]byte, 8)
			rand.Read(b) // never fails (crypto/rand.Read documents it)
			id = hex.EncodeToString(b)
		}
		w.Header().Set(RequestIDHeader, id)
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// fail answers r with an error: status, a stable code and msg, which is
// what the client may read. err, the full cause, goes to the log under the
// request id, never to the client.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, code, msg string, err error) {
	outcomeOf(r.Context()).code = code
	id := requestID(r.Context())
	attrs := []any{"request_id", id, "status", status, "code", code, "method", r.Method, "path", r.URL.Path}
	level := slog.LevelDebug
	if err != nil {
		attrs = append(attrs, "err", err)
		level = slog.LevelInfo
	}
	if status >= 500 {
		level = slog.LevelError
	}
	s.log.Log(r.Context(), level, "request failed", attrs...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Disposition")
	h.Del("Trailer")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	// <lake>, not \u003clake\u003e: the body is JSON and never sniffed
	// (nosniff), so HTML escaping only hurts reading.
	enc.SetEscapeHTML(false)
	_ = enc.Encode(apiError{errorBody{code, msg, id}}) // a failed write means the client has gone
}

// timedOut says whether r's deadline, the query timeout, has passed.
func timedOut(r *http.Request, err error) bool {
	return errors.Is(context.Cause(r.Context()), query.ErrQueryTimeout) || errors.Is(err, query.ErrQueryTimeout) ||
		errors.Is(err, context.DeadlineExceeded)
}

// canceled says whether r was canceled (its client went away, or a
// Flight client canceled it): whatever failed after that failed for it,
// as DuckDB's "Interrupted" of views being made for the request.
func canceled(r *http.Request, err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(context.Cause(r.Context()), context.Canceled)
}

// sessionFailed answers a request whose tenant session could not be had.
func (s *Server) sessionFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, query.ErrUnknownTenant):
		s.fail(w, r, http.StatusNotFound, "unknown_tenant", "no such tenant", nil)
	case errors.Is(err, query.ErrQueueFull):
		w.Header().Set("Retry-After", "1")
		s.fail(w, r, http.StatusTooManyRequests, "queue_full", "too many queries of this tenant are running or waiting; try again shortly", err)
	case timedOut(r, err):
		s.fail(w, r, http.StatusGatewayTimeout, "query_timeout", s.timeoutMessage(), err)
	case canceled(r, err):
		s.fail(w, r, statusClientClosed, "canceled", "the request was canceled", err)
	default:
		s.fail(w, r, http.StatusServiceUnavailable, "lake_unavailable", "the tenant's lake cannot be read now; try again later", err)
	}
}

func (s *Server) timeoutMessage() string {
	return fmt.Sprintf("the query did not finish within the server's limit of %s (waiting for a connection included)", s.opts.QueryTimeout)
}

// queryFailed answers a request whose SQL failed before any output, with a
// message the tenant can act on and nothing of the server's internals.
func (s *Server) queryFailed(w http.ResponseWriter, r *http.Request, tenant, sql string, err error) {
	status, code := classifyRequest(r, err)
	s.fail(w, r, status, code, s.publicMessage(status, code, tenant, sql, err), err)
}

// failedMidStream logs a query that failed after its response began and
// returns what the end of the response tells the client.
func (s *Server) failedMidStream(r *http.Request, tenant, sql string, rows int, err error) errorBody {
	status, code := classifyRequest(r, err)
	outcomeOf(r.Context()).code = code
	id := requestID(r.Context())
	s.log.Info("query failed after its response began", "request_id", id, "tenant", tenant, "rows", rows, "code", code, "err", err)
	return errorBody{code, s.publicMessage(status, code, tenant, sql, err), id}
}

// classifyRequest is classify, except that once r's deadline, the query
// timeout, has passed or r was canceled, whatever failed failed for it.
func classifyRequest(r *http.Request, err error) (int, string) {
	if status, code, ok := requestEnded(r, err); ok {
		return status, code
	}
	return classify(err)
}

// requestEnded is the status and code of a failure that r's own end
// caused: its deadline, the query timeout, passed (first), or it was
// canceled. ok is false when r is still live.
func requestEnded(r *http.Request, err error) (status int, code string, ok bool) {
	switch {
	case timedOut(r, err):
		return http.StatusGatewayTimeout, "query_timeout", true
	case canceled(r, err):
		return statusClientClosed, "canceled", true
	}
	return 0, "", false
}

// classifyDescribe is the status and code of a request whose views could
// not be listed: the query timeout first, then a request canceled (its
// client gone, or a Flight cancel: the views being made then fail with
// DuckDB's "Interrupted", which says nothing of the lake), then views that
// could not be made.
func classifyDescribe(r *http.Request, err error) (int, string) {
	if status, code, ok := requestEnded(r, err); ok {
		return status, code
	}
	if errors.Is(err, query.ErrViewsNotMade) {
		return http.StatusServiceUnavailable, "lake_unavailable"
	}
	return http.StatusInternalServerError, "describe_failed"
}

// publicMessage is what a tenant is told of a failed query: DuckDB's own
// words for the tenant's mistakes, scrubbed of paths; only the code and
// the request id for the server's failures.
func (s *Server) publicMessage(status int, code, tenant, sql string, err error) string {
	switch {
	case code == "query_timeout":
		return s.timeoutMessage()
	case code == "canceled":
		return "the request was canceled"
	case code == "lake_unavailable":
		return "the tenant's lake cannot be read now; try again later"
	case status >= 500 && code != "out_of_memory":
		return "the query failed on the server; its log has the cause under this request id"
	}
	msg := scrub(err.Error(), sql, s.roots[tenant])
	// The tenant's own SQL may quote internal names, but a message naming
	// what only the views' definitions hold comes from inside the server.
	for _, internal := range []string{"read_parquet(", "CREATE "} {
		if strings.Contains(msg, internal) && !strings.Contains(strings.ToUpper(sql), strings.ToUpper(internal)) {
			return "the query failed inside a view; the server log has the cause under this request id"
		}
	}
	return msg
}

// statusClientClosed is nginx's code for a client that went away: no one
// reads the response, but the metrics and the log tell it from a failure.
const statusClientClosed = 499

// classify maps a query error to an HTTP status and an error code.
func classify(err error) (int, string) {
	var de *duckdb.Error
	typ := duckdb.ErrorTypeInvalid
	if errors.As(err, &de) {
		typ = de.Type
	}
	msg := err.Error()
	switch {
	case errors.Is(err, query.ErrQueryTimeout) || errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "query_timeout"
	case errors.Is(err, query.ErrRefused), errors.Is(err, query.ErrNotReadOnly), errors.Is(err, query.ErrMultipleStatements), refused(msg):
		return http.StatusBadRequest, "statement_refused"
	case errors.Is(err, context.Canceled):
		return statusClientClosed, "canceled"
	case errors.Is(err, query.ErrViewsNotMade):
		return http.StatusServiceUnavailable, "lake_unavailable"
	case typ == duckdb.ErrorTypePermission, typ == duckdb.ErrorTypeSettings,
		strings.Contains(msg, "Permission Error"), strings.Contains(msg, "disabled by configuration"),
		strings.Contains(msg, "configuration has been locked"):
		return http.StatusForbidden, "permission_denied"
	case typ == duckdb.ErrorTypeOutOfMemory, strings.Contains(msg, "Out of Memory Error"):
		return http.StatusInsufficientStorage, "out_of_memory"
	case userError[typ], hasUserErrorPrefix(msg), strings.Contains(msg, "No files found that match the pattern"):
		return http.StatusBadRequest, "query_error"
	}
	return http.StatusInternalServerError, "query_failed"
}

// refused reports the statement check's refusals that carry no sentinel
// error: a text without a statement (empty, or only comments), whatever
// words the query layer or the driver use for it.
func refused(msg string) bool {
	msg = strings.ToLower(msg)
	for _, s := range []string{"empty query", "empty statement", "no statement"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// userError are DuckDB's error types of a query that cannot run as
// written: the tenant's to fix.
var userError = map[duckdb.ErrorType]bool{
	duckdb.ErrorTypeParser: true, duckdb.ErrorTypeSyntax: true, duckdb.ErrorTypeBinder: true,
	duckdb.ErrorTypeCatalog: true, duckdb.ErrorTypeConversion: true, duckdb.ErrorTypeInvalidInput: true,
	duckdb.ErrorTypeNotImplemented: true, duckdb.ErrorTypeOutOfRange: true, duckdb.ErrorTypeDivideByZero: true,
	duckdb.ErrorTypeMismatchType: true, duckdb.ErrorTypeInvalidType: true, duckdb.ErrorTypeExpression: true,
	duckdb.ErrorTypeParameterNotResolved: true, duckdb.ErrorTypeParameterNotAllowed: true,
}

// hasUserErrorPrefix finds the user error types by their message prefix,
// for errors that reached here as text.
func hasUserErrorPrefix(msg string) bool {
	for _, p := range []string{"Parser Error", "Syntax Error", "Binder Error", "Catalog Error", "Conversion Error",
		"Invalid Input Error", "Not implemented Error", "Out of Range Error",
		// the driver's, binding the values of a statement's parameters
		"incorrect argument count", "could not bind"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

var (
	// absPath is an absolute path of two segments or more after a
	// delimiter: DuckDB quotes paths in '…' or "…", and lists them in [… , …].
	absPath = regexp.MustCompile(`(^|[\s'"(\[{=,:])/[^\s'"\x60,;()\[\]{}<>/]+(?:/[^\s'"\x60,;()\[\]{}<>/]*)+`)
	// excerpt is DuckDB's quote of the statement around an error, with its
	// caret line.
	excerpt = regexp.MustCompile(`(?m)^LINE \d+: (.*)\n *\^ *$`)
)

// scrub makes an error message fit for a tenant: DuckDB's excerpt of a
// statement is kept only when the statement is the tenant's own (an error
// inside a view quotes the view's definition), the tenant's lake root
// (matched by root, see rootPattern) becomes <lake> and any other absolute
// path <path>.
func scrub(msg, sql string, root *regexp.Regexp) string {
	msg = excerpt.ReplaceAllStringFunc(msg, func(m string) string {
		line := excerpt.FindStringSubmatch(m)[1]
		quoted := strings.TrimSuffix(strings.TrimPrefix(line, "..."), "...")
		if strings.Contains(sql, quoted) {
			return m
		}
		return ""
	})
	if root != nil {
		msg = root.ReplaceAllString(msg, "<lake>$1")
	}
	msg = absPath.ReplaceAllString(msg, "$1<path>")
	return strings.TrimSpace(msg)
}

// rootPattern matches the spellings of a lake's root directory that DuckDB
// may quote (as configured, absolute, with symlinks resolved) where a path
// component ends; nil when the root is not absolute in any spelling.
func rootPattern(root string) *regexp.Regexp {
	var alts []string
	add := func(p string) {
		p = strings.TrimRight(p, "/")
		if len(p) > 1 && filepath.IsAbs(p) && !slices.Contains(alts, regexp.QuoteMeta(p)) {
			alts = append(alts, regexp.QuoteMeta(p))
		}
	}
	add(root)
	if abs, err := filepath.Abs(root); err == nil {
		add(abs)
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			add(real)
		}
	}
	if len(alts) == 0 {
		return nil
	}
	// Longest first, so that a root inside another is not matched in part.
	sort.Slice(alts, func(i, j int) bool { return len(alts[i]) > len(alts[j]) })
	return regexp.MustCompile(`(?:` + strings.Join(alts, "|") + `)(/|$|[^A-Za-z0-9._~+-])`)
}
