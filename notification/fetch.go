package notification

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"
)

// Error classes of FetchError, besides ClassIDOnly (a tenant without a
// FHIR server to read from).
const (
	// ClassFetchFailed: the server could not be read: retries exhausted
	// after 429, 5xx or network errors, a status that is not retried (400,
	// 401, 403, …), or a redirect to another origin.
	ClassFetchFailed = "fetch_failed"
	// ClassFetchInvalid: the server answered, but not with the resource
	// asked for (another type or id, another version, not JSON, too large).
	ClassFetchInvalid = "fetch_invalid"
)

// FetchError is an id-only event whose resource could not be read. The
// record it came from is dead-lettered with Class and Reason. Reasons name
// the URL path and the HTTP status, never the token or the response body.
type FetchError struct {
	Class  string
	Reason string
	// Status is the last HTTP status received; 0 when none was.
	Status int
}

func (e *FetchError) Error() string { return e.Class + ": " + e.Reason }

// FetchOptions configure a Fetcher. Zero values take the documented
// defaults.
type FetchOptions struct {
	// Concurrency bounds requests in flight, all tenants together.
	// Default: 8.
	Concurrency int
	// RatePerSecond bounds requests started per second, all tenants and
	// retries together, so that a burst of id-only notifications cannot
	// flood the FHIR servers. Default: 50.
	RatePerSecond float64
	// Timeout bounds one request, reading the body included. Default: 10s.
	Timeout time.Duration
	// MaxRetries bounds the retries of one read after 408, 429, 5xx (but
	// 501) and network errors. Default: 4; negative: no retries.
	MaxRetries int
	// InitialBackoff is the wait before the first retry; it doubles with
	// each retry, with ±50% jitter, up to MaxBackoff. Default: 250ms.
	InitialBackoff time.Duration
	// MaxBackoff caps one wait between retries, a server's Retry-After
	// included (a longer pause would stall the partition). Default: 10s.
	MaxBackoff time.Duration
	// Client sends the requests. Default: a client of its own. Its redirect
	// policy is replaced: only redirects to the same origin are followed.
	Client *http.Client
}

// Validate reports options that have no sensible meaning; zero values are
// fine (they take the defaults).
func (o FetchOptions) Validate() error {
	switch {
	case o.Concurrency < 0:
		return fmt.Errorf("fetch concurrency %d is negative", o.Concurrency)
	case o.RatePerSecond < 0 || math.IsNaN(o.RatePerSecond) || math.IsInf(o.RatePerSecond, 0):
		return fmt.Errorf("fetch rate %v per second is not a positive number", o.RatePerSecond)
	case o.Timeout < 0 || o.InitialBackoff < 0 || o.MaxBackoff < 0:
		return errors.New("fetch timeout and backoffs must not be negative")
	}
	return nil
}

func (o *FetchOptions) defaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.RatePerSecond <= 0 {
		o.RatePerSecond = 50
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 4
	}
	if o.MaxRetries < 0 {
		o.MaxRetries = 0
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
}

// FetchTarget is a tenant's FHIR server.
type FetchTarget struct {
	// BaseURL is the tenant's FHIR base, e.g. https://fhir.acme.example.org/fhir.
	// Every read of the tenant goes there, whatever base URL the
	// notification names: a notification is never followed to a host.
	BaseURL string
	// Token is sent as "Authorization: Bearer <Token>"; empty sends no
	// Authorization header.
	Token string
}

// Fetcher reads the resources of id-only notifications from each tenant's
// FHIR server. It is safe for concurrent use.
type Fetcher struct {
	opts    FetchOptions
	client  *http.Client
	targets map[string]target
	sem     chan struct{}
	limit   *limiter
	// now and sleep are the clock; tests replace them.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

type target struct {
	base  *url.URL
	token string
}

// NewFetcher returns a fetcher for the given tenants' FHIR servers.
func NewFetcher(opts FetchOptions, targets map[string]FetchTarget) (*Fetcher, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.defaults()
	f := &Fetcher{
		opts:    opts,
		targets: make(map[string]target, len(targets)),
		sem:     make(chan struct{}, opts.Concurrency),
		limit:   &limiter{interval: time.Duration(float64(time.Second) / opts.RatePerSecond)},
		now:     time.Now,
		sleep:   sleepCtx,
	}
	for tenant, t := range targets {
		u, err := checkBaseURL(t.BaseURL)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %w", tenant, err)
		}
		if strings.ContainsAny(t.Token, "\r\n") {
			return nil, fmt.Errorf("tenant %s: token contains a line break", tenant)
		}
		f.targets[tenant] = target{base: u, token: t.Token}
	}
	var c http.Client
	if opts.Client != nil {
		c = *opts.Client
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = opts.Concurrency
		c.Transport = tr
	}
	c.CheckRedirect = sameOrigin
	f.client = &c
	return f, nil
}

// Close releases idle connections. The fetcher must not be used after.
func (f *Fetcher) Close() { f.client.CloseIdleConnections() }

func checkBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(s, "/"))
	switch {
	case err != nil:
		return nil, fmt.Errorf("FHIR base URL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("FHIR base URL %q: want http or https", s)
	case u.Host == "":
		return nil, fmt.Errorf("FHIR base URL %q has no host", s)
	case u.User != nil:
		return nil, fmt.Errorf("FHIR base URL %q carries credentials: use the token", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("FHIR base URL %q has a query or fragment", s)
	}
	return u, nil
}

// redirectError refuses a redirect that leaves the tenant's server.
type redirectError struct{ to string }

func (e *redirectError) Error() string { return "refused a redirect to " + e.to }

func sameOrigin(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("more than 5 redirects")
	}
	if req.URL.Scheme != via[0].URL.Scheme || req.URL.Host != via[0].URL.Host {
		return &redirectError{to: req.URL.Scheme + "://" + req.URL.Host}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Fetch reads ref from the tenant's FHIR server: a vread
// (GET base/Type/id/_history/v) when the version is known, falling back to a
// read when the server has no such version or no history; else a read
// (GET base/Type/id). deleted is true when the server answers 404 or 410:
// store a delete. A failure is a *FetchError, to dead-letter; any other
// error means ctx ended (the record must be replayed, not dead-lettered).
func (f *Fetcher) Fetch(ctx context.Context, tenant string, ref FetchRef) (resource []byte, deleted bool, err error) {
	t, ok := f.targets[tenant]
	if !ok {
		return nil, false, &FetchError{Class: ClassIDOnly,
			Reason: fmt.Sprintf("%s/%s is id-only and tenant %q has no FHIR server configured to read it from", ref.ResourceType, ref.ID, tenant)}
	}
	if !isResourceType(ref.ResourceType) || !isFHIRID(ref.ID) || ref.VersionID != "" && !isFHIRID(ref.VersionID) {
		return nil, false, &FetchError{Class: ClassFetchInvalid,
			Reason: fmt.Sprintf("cannot read %.80q/%.80q version %.80q: not a FHIR type, id and version", ref.ResourceType, ref.ID, ref.VersionID)}
	}
	path := ref.ResourceType + "/" + ref.ID
	if ref.VersionID != "" {
		body, status, err := f.get(ctx, t, path+"/_history/"+ref.VersionID, ref, true)
		switch {
		case err != nil:
			return nil, false, err
		case status == http.StatusOK:
			return body, false, nil
		case status == http.StatusGone:
			return nil, true, nil
		}
		// 404, 405 or 501: the version is gone from history, or the
		// server keeps none; the current version is what the lake wants.
	}
	body, status, err := f.get(ctx, t, path, ref, false)
	if err != nil {
		return nil, false, err
	}
	return body, status != http.StatusOK, nil
}

// get reads one URL with retries. It returns the body of a 200, or the
// status of a 404 or 410 (and of a 405 or 501 to a vread) without a body.
func (f *Fetcher) get(ctx context.Context, t target, path string, ref FetchRef, versioned bool) ([]byte, int, error) {
	u := t.base.JoinPath(path).String()
	shown := t.base.Path + "/" + path
	for attempt := 0; ; attempt++ {
		res, err := f.attempt(ctx, t, u)
		if ctx.Err() != nil {
			return nil, 0, fmt.Errorf("read %s: %w", shown, ctx.Err())
		}
		var why string
		switch {
		case err != nil:
			var re *redirectError
			if errors.As(err, &re) {
				return nil, 0, &FetchError{Class: ClassFetchFailed, Reason: fmt.Sprintf("GET %s: %v", shown, re)}
			}
			why = networkReason(err)
		case res.status == http.StatusOK:
			if res.tooLarge {
				return nil, 0, &FetchError{Class: ClassFetchInvalid, Status: res.status,
					Reason: fmt.Sprintf("GET %s: resource larger than %d bytes", shown, MaxRecordBytes)}
			}
			body, msg := checkFetched(res.body, ref, versioned)
			if msg != "" {
				return nil, 0, &FetchError{Class: ClassFetchInvalid, Status: res.status, Reason: fmt.Sprintf("GET %s: %s", shown, msg)}
			}
			return body, res.status, nil
		case res.status == http.StatusNotFound || res.status == http.StatusGone:
			return nil, res.status, nil
		case versioned && (res.status == http.StatusMethodNotAllowed || res.status == http.StatusNotImplemented):
			return nil, res.status, nil
		case retryable(res.status):
			why = "HTTP " + strconv.Itoa(res.status)
		default:
			return nil, 0, &FetchError{Class: ClassFetchFailed, Status: res.status,
				Reason: fmt.Sprintf("GET %s: HTTP %d", shown, res.status)}
		}
		if attempt >= f.opts.MaxRetries {
			status := 0
			if err == nil {
				status = res.status
			}
			return nil, 0, &FetchError{Class: ClassFetchFailed, Status: status,
				Reason: fmt.Sprintf("GET %s: %s after %d attempts", shown, why, attempt+1)}
		}
		wait := f.backoff(attempt)
		if err == nil && res.retryAfter > wait {
			wait = res.retryAfter
		}
		wait = min(wait, f.opts.MaxBackoff)
		if err := f.sleep(ctx, wait); err != nil {
			return nil, 0, fmt.Errorf("read %s: %w", shown, err)
		}
	}
}

func retryable(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests ||
		status >= 500 && status != http.StatusNotImplemented
}

// networkReason describes a transport error without the URL (which the
// reason already names) and without anything the server sent.
func networkReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return err.Error()
}

// backoff is the wait before retry attempt+1: InitialBackoff doubled per
// attempt, with ±50% jitter so that many readers do not retry in step.
func (f *Fetcher) backoff(attempt int) time.Duration {
	d := f.opts.InitialBackoff << min(attempt, 20)
	if d <= 0 || d > f.opts.MaxBackoff {
		d = f.opts.MaxBackoff
	}
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}

type response struct {
	status     int
	body       []byte
	tooLarge   bool
	retryAfter time.Duration
}

// attempt sends one request, within the rate limit and the concurrency
// bound.
func (f *Fetcher) attempt(ctx context.Context, t target, u string) (response, error) {
	if err := f.sleep(ctx, f.limit.reserve(f.now())); err != nil {
		return response{}, err
	}
	select {
	case f.sem <- struct{}{}:
	case <-ctx.Done():
		return response{}, ctx.Err()
	}
	defer func() { <-f.sem }()
	actx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	res := response{status: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), f.now())
		// Drain a little so that the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return res, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxRecordBytes+1))
	if err != nil {
		return response{}, err
	}
	res.body, res.tooLarge = body, len(body) > MaxRecordBytes
	return res, nil
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or
// unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(min(s, 86400)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// checkFetched checks that body is the resource asked for, and returns it
// without a BOM or surrounding space; msg says what is wrong, "" if
// nothing.
func checkFetched(body []byte, ref FetchRef, versioned bool) ([]byte, string) {
	body = bytes.TrimSpace(bytes.TrimPrefix(body, []byte(utf8BOM)))
	var head resourceHead
	if msg := checkResourceJSON(body, &head); msg != "" {
		return nil, msg
	}
	if head.typ != ref.ResourceType || head.id != ref.ID {
		return nil, fmt.Sprintf("got %s/%.80s, want %s/%s", head.typ, head.id, ref.ResourceType, ref.ID)
	}
	if versioned && head.versionID != "" && head.versionID != ref.VersionID {
		return nil, fmt.Sprintf("got version %.80s, want %s", head.versionID, ref.VersionID)
	}
	return body, ""
}

// checkResourceJSON reads a resource document's header into head and says
// what is wrong with it, "" if nothing.
func checkResourceJSON(body []byte, head *resourceHead) string {
	if len(body) == 0 {
		return "empty response"
	}
	if !utf8.Valid(body) {
		return "response is not valid UTF-8"
	}
	if msg := readEmbedded(body, head); msg != "" {
		return "response " + msg
	}
	return ""
}

// Resolve reads every id-only event of n from the tenant's FHIR server,
// Concurrency at a time, and completes them (Event.ApplyFetch). The first
// *FetchError stops the others: the whole record is dead-lettered. Any
// other error means ctx ended.
func (f *Fetcher) Resolve(ctx context.Context, tenant string, n *Notification) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(f.opts.Concurrency)
	for i := range n.Events {
		ev := &n.Events[i]
		if ev.Fetch == nil {
			continue
		}
		ref := *ev.Fetch
		g.Go(func() error {
			body, deleted, err := f.Fetch(gctx, tenant, ref)
			if err != nil {
				return err
			}
			return ev.ApplyFetch(body, deleted)
		})
	}
	return g.Wait()
}

// ApplyFetch completes an id-only event with what Fetcher.Fetch returned:
// the resource (its meta.versionId and lastUpdated win over the
// notification's), or a delete when the server no longer has it.
func (ev *Event) ApplyFetch(resource []byte, deleted bool) error {
	if ev.Fetch == nil {
		return fmt.Errorf("%s/%s is not an id-only event", ev.ResourceType, ev.ID)
	}
	if deleted {
		ev.Operation, ev.Resource, ev.Parsed, ev.Fetch = OpDelete, nil, nil, nil
		return nil
	}
	var head resourceHead
	if msg := checkResourceJSON(resource, &head); msg != "" {
		return &FetchError{Class: ClassFetchInvalid, Reason: fmt.Sprintf("%s/%s: %s", ev.ResourceType, ev.ID, msg)}
	}
	if head.typ != ev.ResourceType || head.id != ev.ID {
		return &FetchError{Class: ClassFetchInvalid,
			Reason: fmt.Sprintf("got %s/%.80s, want %s/%s", head.typ, head.id, ev.ResourceType, ev.ID)}
	}
	ev.Resource, ev.Parsed, ev.Fetch = resource, nil, nil
	if head.versionID != "" {
		ev.VersionID = head.versionID
	}
	if t := parseInstant(head.lastUpdated); !t.IsZero() {
		ev.LastUpdated = t
	}
	return nil
}

// limiter spaces request starts 1/rate apart (a token bucket of one): a
// caller reserves the next free slot and waits until it comes.
type limiter struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

// reserve returns how long to wait before starting a request.
func (l *limiter) reserve(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next.Before(now) {
		l.next = now
	}
	wait := l.next.Sub(now)
	l.next = l.next.Add(l.interval)
	return wait
}
