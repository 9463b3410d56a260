package flight

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"fhirlake/query"
	"fhirlake/query/web"
)

// A call to the tenant's worker goes the HTTP API's way: the front's
// web.Forwarder (the tenant's queue, its worker process, the worker's
// statement check and limits), the response piped back here as it comes.

// response is the http.ResponseWriter a forwarded call writes to: its
// status and headers once it starts, its body through a pipe, which
// blocks the worker's stream until the Flight client has taken what came
// before (so nothing piles up here).
type response struct {
	header  http.Header
	status  int
	once    sync.Once
	started chan struct{} // closed by the first WriteHeader or Write
	body    *io.PipeWriter
}

func (r *response) Header() http.Header { return r.header }

func (r *response) WriteHeader(code int) {
	r.once.Do(func() { r.status = code; close(r.started) })
}

func (r *response) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

// Flush is a no-op: every Write reaches the reader at once.
func (r *response) Flush() {}

// call is one forwarded request in flight.
type call struct {
	resp *response
	body *io.PipeReader
	done chan struct{} // closed when Forward has returned
	err  error         // Forward's, once done
}

// Close stops reading the response and waits for the forwarding to end:
// a worker still writing gets an error and the front cancels it.
func (c *call) Close() {
	c.body.Close()
	<-c.done
}

// trailer is the worker's Fhirlake-Error trailer ("code: message"), read
// once the body has been read to its end and Close returned.
func (c *call) trailer() (truncated bool, errCode, errMsg string) {
	h := c.resp.header
	truncated = h.Get("Fhirlake-Truncated") == "true"
	if e := h.Get("Fhirlake-Error"); e != "" {
		errCode, errMsg, _ = strings.Cut(e, ": ")
	}
	return truncated, errCode, errMsg
}

// start forwards a request for tenant to its worker and returns once the
// response has begun; an answer that is not 200 is returned as the gRPC
// error it maps to, with the API's message and request id. ctx bounds the
// whole call, streaming included.
func (s *Server) start(ctx context.Context, tenant, method, path string, query url.Values, body any) (*call, string, error) {
	id := newRequestID()
	u := &url.URL{Path: "/v1/tenants/" + url.PathEscape(tenant) + path, RawQuery: query.Encode()}
	var rd io.Reader = http.NoBody
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return nil, id, status.Errorf(codes.Internal, "encode request: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, id, status.Errorf(codes.Internal, "request: %v", err)
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }
	}
	req.SetPathValue("tenant", tenant)
	pr, pw := io.Pipe()
	resp := &response{header: http.Header{}, started: make(chan struct{}), body: pw}
	resp.header.Set(web.RequestIDHeader, id)
	c := &call{resp: resp, body: pr, done: make(chan struct{})}
	// Owned by the call: Close waits for it.
	go func() {
		defer close(c.done)
		c.err = s.opts.Forward.Forward(resp, req, tenant)
		pw.CloseWithError(forwardEnded(ctx, c.err))
	}()
	select {
	case <-resp.started:
	case <-c.done:
		return nil, id, s.grpcError(ctx, id, c.err)
	}
	if resp.status != http.StatusOK {
		defer c.Close()
		return nil, id, apiError(ctx, id, resp.status, io.LimitReader(pr, 64<<10))
	}
	return c, id, nil
}

// forwardEnded is what a reader of the body sees after its last byte.
func forwardEnded(ctx context.Context, err error) error {
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return io.EOF
}

func newRequestID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// grpcError maps an error of the forwarding itself (nothing written) to
// gRPC, as query/web maps it to HTTP.
func (s *Server) grpcError(ctx context.Context, id string, err error) error {
	switch {
	case err == nil:
		return status.Errorf(codes.Internal, "the worker ended without an answer (request id %s)", id)
	case errors.Is(err, query.ErrUnknownTenant):
		return status.Error(codes.NotFound, "no such tenant")
	case errors.Is(err, query.ErrQueueFull):
		return status.Errorf(codes.ResourceExhausted, "too many queries of this tenant are running or waiting; try again shortly (request id %s)", id)
	case errors.Is(context.Cause(ctx), query.ErrQueryTimeout) || errors.Is(err, query.ErrQueryTimeout):
		return status.Error(codes.DeadlineExceeded, s.timeoutMessage(id))
	case errors.Is(err, context.Canceled):
		return status.Errorf(codes.Canceled, "the query was canceled (request id %s)", id)
	case errors.Is(err, web.ErrWorkerRestarting):
		return status.Errorf(codes.Unavailable, "the tenant's query worker stopped and is restarting; try again shortly (request id %s)", id)
	default:
		s.log.Warn("flight: forward failed", "request_id", id, "err", err)
		return status.Errorf(codes.Unavailable, "the tenant's lake cannot be read now; try again later (request id %s)", id)
	}
}

func (s *Server) timeoutMessage(id string) string {
	return fmt.Sprintf("the query did not finish within the server's limit of %s (waiting for a connection included) (request id %s)", s.opts.QueryTimeout, id)
}

// apiError maps an error response of the HTTP API to gRPC: its code and
// message (which hold nothing of the server's internals) and request id.
func apiError(ctx context.Context, id string, httpStatus int, body io.Reader) error {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.NewDecoder(body).Decode(&e); err != nil || e.Error.Code == "" {
		e.Error.Code, e.Error.Message = "http_"+fmt.Sprint(httpStatus), http.StatusText(httpStatus)
	}
	if errors.Is(context.Cause(ctx), query.ErrQueryTimeout) {
		httpStatus = http.StatusGatewayTimeout
	}
	return status.Errorf(httpCode(httpStatus, e.Error.Code), "%s: %s (request id %s)", e.Error.Code, e.Error.Message, id)
}

// httpCode is the gRPC code of an HTTP status (and the API's error code).
func httpCode(httpStatus int, code string) codes.Code {
	switch {
	case code == "query_timeout" || httpStatus == http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	case code == "canceled":
		return codes.Canceled
	}
	switch httpStatus {
	case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusTooManyRequests, http.StatusInsufficientStorage:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	return codes.Internal
}
