package bulkexport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

const (
	// requestTimeout bounds a kick-off, a poll, a token or discovery
	// request, body included.
	requestTimeout = time.Minute
	// firstBackoff and maxBackoff bound the waits between retries and
	// between polls when the server does not say how long to wait.
	firstBackoff = time.Second
	maxBackoff   = 30 * time.Second
)

// NewHTTPClient is the client used when Options.HTTP is nil: no overall
// timeout (a download lasts as long as it progresses, see
// Options.IdleTimeout), bounded connection set-up and waits for headers.
func NewHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = requestTimeout
	t.MaxIdleConnsPerHost = MaxParallel
	return &http.Client{Transport: t}
}

// client sends the requests of one export.
type client struct {
	hc         *http.Client
	tokens     Tokens
	maxRetries int
	maxWait    time.Duration
	sleep      func(context.Context, time.Duration) error
}

// retryPolicy says which answers are retried.
type retryPolicy struct {
	// statuses retried (with Retry-After honoured).
	statuses map[int]bool
	// network errors retried: a request that may have reached the server
	// is repeated only where repeating it is harmless.
	network bool
}

var (
	// A kick-off is repeated only when the server says it did not take it.
	retryKickOff = retryPolicy{statuses: map[int]bool{429: true, 503: true}}
	// Polls and downloads are reads.
	retryRead = retryPolicy{statuses: map[int]bool{429: true, 500: true, 502: true, 503: true, 504: true}, network: true}
)

// send GETs u with the header h, with the bearer token when auth is set.
// A 401 renews the token once and repeats the request; answers and errors
// that p retries are retried up to maxRetries times, waiting as the
// server's Retry-After says (capped by maxWait) or backing off. Any other
// answer is returned, its body open.
func (c *client) send(ctx context.Context, op, u string, h http.Header, auth bool, p retryPolicy) (*http.Response, error) {
	renewed := false
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", op, u, err)
		}
		for k, vs := range h {
			req.Header[k] = vs
		}
		var tok string
		if auth && c.tokens != nil {
			if tok, err = c.tokens.Token(ctx); err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if !p.network || attempt >= c.maxRetries {
				return nil, fmt.Errorf("%s %s: %w", op, u, err)
			}
			if err := c.sleep(ctx, c.backoff(attempt)); err != nil {
				return nil, err
			}
			continue
		}
		switch {
		case resp.StatusCode == http.StatusUnauthorized && auth && c.tokens != nil && !renewed:
			discard(resp)
			renewed = true
			if _, err := c.tokens.Renew(ctx, tok); err != nil {
				return nil, fmt.Errorf("%s %s: %w", op, u, err)
			}
			attempt--
		case p.statuses[resp.StatusCode] && attempt < c.maxRetries:
			d := c.retryAfter(resp.Header, c.backoff(attempt))
			discard(resp)
			if err := c.sleep(ctx, d); err != nil {
				return nil, err
			}
		default:
			return resp, nil
		}
	}
}

// backoff is the wait before retry attempt+1 when the server names none.
func (c *client) backoff(attempt int) time.Duration {
	d := firstBackoff << min(attempt, 10)
	return min(d, maxBackoff, c.maxWait)
}

// retryAfter reads Retry-After (seconds or an HTTP date), capped by
// maxWait; def when absent or unreadable.
func (c *client) retryAfter(h http.Header, def time.Duration) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return def
	}
	var d time.Duration
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return def
		}
		d = time.Duration(min(s, int(c.maxWait/time.Second)+1)) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		d = max(time.Until(at), 0)
	} else {
		return def
	}
	return min(d, c.maxWait)
}

// StatusError is an answer other than the one expected.
type StatusError struct {
	Op, URL string
	Status  int
	// Message is the answer's OperationOutcome issues, or its first bytes.
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %d %s: %s", e.Op, e.URL, e.Status, http.StatusText(e.Status), e.Message)
}

// statusError reads (a bounded part of) resp's body into a StatusError and
// closes it.
func statusError(op, u string, resp *http.Response) error {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return &StatusError{Op: op, URL: u, Status: resp.StatusCode, Message: bodyMessage(body)}
}

// discard reads and closes a body that is not used, so that the
// connection is kept, up to a bound.
func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// idleReader cuts a body that delivers nothing for idle: cancel is called
// (it cancels the request's context), so the pending Read fails.
type idleReader struct {
	r     io.Reader
	timer *time.Timer
	idle  time.Duration
}

func newIdleReader(r io.Reader, idle time.Duration, cancel context.CancelFunc) *idleReader {
	return &idleReader{r: r, idle: idle, timer: time.AfterFunc(idle, cancel)}
}

func (ir *idleReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	ir.timer.Reset(ir.idle)
	return n, err
}

func (ir *idleReader) stop() { ir.timer.Stop() }

// transient reports whether a download error is worth resuming: the
// connection broke, or the body ended early.
func transient(err error) bool {
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}
