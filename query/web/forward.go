package web

import (
	"errors"
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
func (s *Server) forward(w http.ResponseWriter, r *http.Request, tenant string) int {
	if err := s.opts.Forward.Forward(w, r, tenant); err != nil {
		if errors.Is(err, ErrWorkerRestarting) {
			w.Header().Set("Retry-After", "1")
			s.fail(w, r, http.StatusServiceUnavailable, "worker_restarting", "the tenant's query worker stopped and is restarting; try again shortly", err)
			return 0
		}
		s.sessionFailed(w, r, err)
	}
	return 0
}
