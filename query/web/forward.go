package web

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Forwarder serves a tenant's query, tables and status requests somewhere else —
// in a worker process of the tenant's own — once the front has
// authenticated them.
type Forwarder interface {
	// Forward waits for one of the tenant's slots (query.ErrQueueFull when
	// too many wait already) and serves r there. It returns an error only
	// when it has written nothing, for the front to answer.
	Forward(w http.ResponseWriter, r *http.Request, tenant string) error
}

// ErrWorkerRestarting is the error of a request whose tenant's worker
// stopped (crashed, ran out of memory, was killed) before answering; the
// next request gets a new one.
var ErrWorkerRestarting = errors.New("the tenant's worker stopped; it is restarting")

// forward serves a tenant route through opts.Forward.
//
// The request's body is read here, whole and bounded, before the request
// waits for a slot: a client that sends its statement slowly holds no
// worker, and the body is never read by two goroutines at once (the
// server discards what a handler left unread when the response begins,
// while a proxy may still be sending it on).
func (s *Server) forward(w http.ResponseWriter, r *http.Request, tenant string) int {
	if r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxRequestBytes))
		if err != nil {
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				s.fail(w, r, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body over %d bytes", s.opts.MaxRequestBytes), nil)
			} else {
				s.fail(w, r, http.StatusBadRequest, "bad_request", "read request: "+err.Error(), nil)
			}
			return 0
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		if r.Method == http.MethodPost {
			// For the audit record; the worker answers a body without one.
			if q, status, _ := parseSQL(b, r.Header.Get("Content-Type")); status == 0 {
				outcomeOf(r.Context()).sql = q
			}
		}
	}
	if err := s.opts.Forward.Forward(w, r, tenant); err != nil {
		if errors.Is(err, ErrWorkerRestarting) {
			w.Header().Set("Retry-After", "1")
			s.fail(w, r, http.StatusServiceUnavailable, "worker_restarting", "the tenant's query worker stopped and is restarting; try again shortly", err)
			return 0
		}
		s.sessionFailed(w, r, err)
		return 0
	}
	rows, code := takeOutcome(w.Header())
	if code != "" {
		outcomeOf(r.Context()).code = code
	}
	return rows
}
