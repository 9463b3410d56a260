package web

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"fhirlake/audit"
)

// The trailers a worker ends each tenant response with (Options.
// ReportOutcome), for its front's audit record and metrics: the rows it
// returned and, when it failed, the error code it answered. The worker
// declares them in the response's header, so that even a short response is
// chunked and carries them; the front takes them off the response (the
// supervisor from the declaration, forward from the trailers) before they
// reach the client.
const (
	RowsTrailer      = "Fhirlake-Rows"
	ErrorCodeTrailer = "Fhirlake-Error-Code"
)

// outcome is what a tenant request's handlers tell its audit record,
// through the request's context: they run on the request's goroutine.
type outcome struct {
	sql  string
	code string // the error code answered; "" for a success
}

type outcomeKey struct{}

func withOutcome(r *http.Request) (*http.Request, *outcome) {
	o := &outcome{}
	return r.WithContext(context.WithValue(r.Context(), outcomeKey{}, o)), o
}

// outcomeOf is the request's outcome, or one that nobody reads outside a
// tenant route.
func outcomeOf(ctx context.Context) *outcome {
	if o, ok := ctx.Value(outcomeKey{}).(*outcome); ok {
		return o
	}
	return &outcome{}
}

// finish ends a tenant request: a worker reports its outcome to its front
// in trailers; a server with an audit writer (the front) writes its record.
func (s *Server) finish(sw *statusWriter, r *http.Request, route, tenant string, c caller, o *outcome, rows int, start time.Time) {
	if s.opts.ReportOutcome {
		sw.Header().Set(RowsTrailer, strconv.Itoa(rows))
		if o.code != "" {
			sw.Header().Set(ErrorCodeTrailer, o.code)
		}
		return
	}
	if s.opts.Audit == nil {
		return
	}
	status := audit.StatusOK
	switch {
	case o.code != "":
		status = o.code
	case sw.status >= 400:
		status = "http_" + strconv.Itoa(sw.status)
	}
	s.opts.Audit.Write(audit.Record{
		Time:       time.Now(),
		Kind:       route,
		Source:     audit.SourceServe,
		Protocol:   audit.ProtocolHTTP,
		Tenant:     tenant,
		Key:        c.name,
		RequestID:  requestID(r.Context()),
		Remote:     r.RemoteAddr,
		SQL:        o.sql,
		Rows:       int64(rows),
		Bytes:      sw.bytes,
		DurationMS: float64(time.Since(start).Microseconds()) / 1000,
		Status:     status,
		HTTPStatus: sw.status,
	})
}

// takeOutcome reads a worker's trailers off the front's response, under
// either name the proxy gives them (declared or not), and removes them.
func takeOutcome(h http.Header) (rows int, code string) {
	take := func(name string) string {
		v := h.Get(name)
		if v == "" {
			v = h.Get(http.TrailerPrefix + name)
		}
		h.Del(name)
		h.Del(http.TrailerPrefix + name)
		return v
	}
	rows, _ = strconv.Atoi(take(RowsTrailer))
	return rows, take(ErrorCodeTrailer)
}

// ErrorCode is the error code the API answers a query that failed with
// err: what `fhirlake query` records in its audit record.
func ErrorCode(err error) string {
	_, code := classify(err)
	return code
}
