package notification

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fhirlake/internal/fhirserver"
	"fhirlake/internal/testenv"
)

const (
	patientV1 = `{"resourceType":"Patient","id":"p1","meta":{"versionId":"1","lastUpdated":"2024-01-01T00:00:00Z"},"gender":"female"}`
	patientV2 = `{"resourceType":"Patient","id":"p1","meta":{"versionId":"2","lastUpdated":"2024-02-01T00:00:00Z"},"gender":"male"}`
)

// fakeClock replaces a fetcher's sleeps: it records every wait and returns
// at once, so that tests assert on the waits asked for, not on durations.
type fakeClock struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (c *fakeClock) install(f *Fetcher) {
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	f.now = func() time.Time { return start }
	f.sleep = func(ctx context.Context, d time.Duration) error {
		c.mu.Lock()
		c.waits = append(c.waits, d)
		c.mu.Unlock()
		return ctx.Err()
	}
}

func (c *fakeClock) nonZero() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Duration
	for _, d := range c.waits {
		if d > 0 {
			out = append(out, d)
		}
	}
	return out
}

// newTestFetcher returns a fetcher of tenant "acme" reading from srv, with a
// fake clock and a rate limit high enough not to matter.
func newTestFetcher(t *testing.T, srv *fhirserver.Server, token string, opts FetchOptions) (*Fetcher, *fakeClock) {
	t.Helper()
	if opts.RatePerSecond == 0 {
		opts.RatePerSecond = 1e12 // slots 0 apart: no waits
	}
	f, err := NewFetcher(opts, map[string]FetchTarget{"acme": {BaseURL: srv.URL + "/", Token: token}})
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{}
	clock.install(f)
	return f, clock
}

// newFHIRServer starts a FHIR server under /fhir holding Patient/p1 in two
// versions.
func newFHIRServer(t *testing.T, opts fhirserver.Options) *fhirserver.Server {
	t.Helper()
	opts.BasePath = "/fhir"
	srv := fhirserver.New(opts)
	t.Cleanup(srv.Close)
	for _, r := range []string{patientV1, patientV2} {
		if _, err := srv.Add([]byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	return srv
}

func TestFetch(t *testing.T) {
	for _, tc := range []struct {
		name      string
		setup     func(s *fhirserver.Server)
		ref       FetchRef
		wantBody  string
		deleted   bool
		wantPaths []string
	}{
		{name: "versioned read", ref: FetchRef{ResourceType: "Patient", ID: "p1", VersionID: "1"},
			wantBody: patientV1, wantPaths: []string{"/Patient/p1/_history/1"}},
		{name: "unversioned read", ref: FetchRef{ResourceType: "Patient", ID: "p1"},
			wantBody: patientV2, wantPaths: []string{"/Patient/p1"}},
		{name: "version gone from history: read the current one", ref: FetchRef{ResourceType: "Patient", ID: "p1", VersionID: "9"},
			wantBody: patientV2, wantPaths: []string{"/Patient/p1/_history/9", "/Patient/p1"}},
		{name: "404 is a delete", ref: FetchRef{ResourceType: "Patient", ID: "nope"},
			deleted: true, wantPaths: []string{"/Patient/nope"}},
		{name: "410 is a delete", setup: func(s *fhirserver.Server) { s.Delete("Patient", "p1") },
			ref:     FetchRef{ResourceType: "Patient", ID: "p1"},
			deleted: true, wantPaths: []string{"/Patient/p1"}},
		{name: "410 to a vread is a delete", setup: func(s *fhirserver.Server) {
			s.Respond("/Patient/p1/_history/3", http.StatusGone, nil)
		}, ref: FetchRef{ResourceType: "Patient", ID: "p1", VersionID: "3"},
			deleted: true, wantPaths: []string{"/Patient/p1/_history/3"}},
		{name: "deleted since: vread 404, read 410", setup: func(s *fhirserver.Server) { s.Delete("Patient", "p1") },
			ref:     FetchRef{ResourceType: "Patient", ID: "p1", VersionID: "3"},
			deleted: true, wantPaths: []string{"/Patient/p1/_history/3", "/Patient/p1"}},
		{name: "no history: read the current one", setup: func(s *fhirserver.Server) {
			s.Respond("/Patient/p1/_history/2", http.StatusMethodNotAllowed, nil)
		}, ref: FetchRef{ResourceType: "Patient", ID: "p1", VersionID: "2"},
			wantBody: patientV2, wantPaths: []string{"/Patient/p1/_history/2", "/Patient/p1"}},
		{name: "the tenant's base URL wins", ref: FetchRef{ResourceType: "Patient", ID: "p1", BaseURL: "https://elsewhere.example.org/fhir"},
			wantBody: patientV2, wantPaths: []string{"/Patient/p1"}},
		{name: "429 then success", setup: func(s *fhirserver.Server) {
			s.FailNext(1, http.StatusTooManyRequests, http.Header{"Retry-After": {"2"}})
		}, ref: FetchRef{ResourceType: "Patient", ID: "p1"},
			wantBody: patientV2, wantPaths: []string{"/Patient/p1", "/Patient/p1"}},
		{name: "503 twice then success", setup: func(s *fhirserver.Server) {
			s.FailNext(2, http.StatusServiceUnavailable, nil)
		}, ref: FetchRef{ResourceType: "Patient", ID: "p1", VersionID: "1"},
			wantBody: patientV1, wantPaths: []string{"/Patient/p1/_history/1", "/Patient/p1/_history/1", "/Patient/p1/_history/1"}},
		{name: "same-origin redirect is followed", setup: func(s *fhirserver.Server) {
			s.Redirect("/Patient/p1", "/fhir/Patient/p1/_history/2")
		}, ref: FetchRef{ResourceType: "Patient", ID: "p1"},
			wantBody: patientV2, wantPaths: []string{"/Patient/p1", "/Patient/p1/_history/2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFHIRServer(t, fhirserver.Options{})
			if tc.setup != nil {
				tc.setup(srv)
			}
			f, _ := newTestFetcher(t, srv, "", FetchOptions{})
			body, deleted, err := f.Fetch(context.Background(), "acme", tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			if string(body) != tc.wantBody || deleted != tc.deleted {
				t.Errorf("got %s deleted=%v, want %s deleted=%v", body, deleted, tc.wantBody, tc.deleted)
			}
			if got := srv.Paths(); !slices.Equal(got, tc.wantPaths) {
				t.Errorf("requests: got %q, want %q", got, tc.wantPaths)
			}
			for _, r := range srv.Log() {
				if got := r.Header.Get("Accept"); got != "application/fhir+json" {
					t.Errorf("Accept: got %q, want application/fhir+json", got)
				}
				if got := r.Header.Get("Authorization"); got != "" {
					t.Errorf("Authorization: got %q, want none without a token", got)
				}
			}
		})
	}
}

func TestFetchRespectsRetryAfter(t *testing.T) {
	srv := newFHIRServer(t, fhirserver.Options{})
	srv.FailNext(1, http.StatusTooManyRequests, http.Header{"Retry-After": {"3"}})
	srv.FailNext(1, http.StatusServiceUnavailable, http.Header{"Retry-After": {"600"}})
	f, clock := newTestFetcher(t, srv, "", FetchOptions{InitialBackoff: time.Millisecond, MaxBackoff: 20 * time.Second})
	if _, _, err := f.Fetch(context.Background(), "acme", FetchRef{ResourceType: "Patient", ID: "p1"}); err != nil {
		t.Fatal(err)
	}
	// Retry-After 3 s is honoured; 600 s is capped at MaxBackoff.
	if got, want := clock.nonZero(), []time.Duration{3 * time.Second, 20 * time.Second}; !slices.Equal(got, want) {
		t.Fatalf("waits: got %v, want %v", got, want)
	}
}

func TestFetchFailures(t *testing.T) {
	for _, tc := range []struct {
		name     string
		token    string
		setup    func(s *fhirserver.Server)
		ref      FetchRef
		class    string
		status   int
		requests int
		reason   string
	}{
		{name: "500 until retries run out", setup: func(s *fhirserver.Server) { s.FailNext(100, 500, nil) },
			class: ClassFetchFailed, status: 500, requests: 4, reason: "HTTP 500 after 4 attempts"},
		{name: "401 is not retried", token: "wrong",
			class: ClassFetchFailed, status: 401, requests: 1, reason: "HTTP 401"},
		{name: "403 is not retried", setup: func(s *fhirserver.Server) { s.FailNext(100, 403, nil) },
			class: ClassFetchFailed, status: 403, requests: 1, reason: "HTTP 403"},
		{name: "400 is not retried", setup: func(s *fhirserver.Server) { s.FailNext(100, 400, nil) },
			class: ClassFetchFailed, status: 400, requests: 1, reason: "HTTP 400"},
		{name: "wrong type in the response", setup: func(s *fhirserver.Server) {
			s.Respond("/Patient/p1", 200, []byte(`{"resourceType":"Observation","id":"p1"}`))
		}, class: ClassFetchInvalid, status: 200, requests: 1, reason: "got Observation/p1, want Patient/p1"},
		{name: "wrong id in the response", setup: func(s *fhirserver.Server) {
			s.Respond("/Patient/p1", 200, []byte(`{"resourceType":"Patient","id":"p2"}`))
		}, class: ClassFetchInvalid, status: 200, requests: 1, reason: "got Patient/p2, want Patient/p1"},
		{name: "an OperationOutcome with 200", setup: func(s *fhirserver.Server) {
			s.Respond("/Patient/p1", 200, []byte(`{"resourceType":"OperationOutcome","issue":[]}`))
		}, class: ClassFetchInvalid, status: 200, requests: 1, reason: "got OperationOutcome/"},
		{name: "not JSON", setup: func(s *fhirserver.Server) {
			s.Respond("/Patient/p1", 200, []byte(`<Patient xmlns="http://hl7.org/fhir"/>`))
		}, class: ClassFetchInvalid, status: 200, requests: 1, reason: "XML"},
		{name: "truncated JSON", setup: func(s *fhirserver.Server) {
			s.Respond("/Patient/p1", 200, []byte(`{"resourceType":"Patient","id":"p1"`))
		}, class: ClassFetchInvalid, status: 200, requests: 1, reason: "not valid JSON"},
		{name: "another version than asked", ref: FetchRef{ResourceType: "Patient", ID: "p1", VersionID: "1"}, setup: func(s *fhirserver.Server) {
			s.Respond("/Patient/p1/_history/1", 200, []byte(patientV2))
		}, class: ClassFetchInvalid, status: 200, requests: 1, reason: "got version 2, want 1"},
		{name: "not a FHIR reference", ref: FetchRef{ResourceType: "Patient", ID: "../../admin"},
			class: ClassFetchInvalid, requests: 0, reason: "not a FHIR type, id and version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFHIRServer(t, fhirserver.Options{Token: "s3cret"})
			if tc.setup != nil {
				tc.setup(srv)
			}
			token := tc.token
			if token == "" {
				token = "s3cret"
			}
			f, _ := newTestFetcher(t, srv, token, FetchOptions{MaxRetries: 3})
			ref := tc.ref
			if ref.ResourceType == "" {
				ref = FetchRef{ResourceType: "Patient", ID: "p1"}
			}
			_, _, err := f.Fetch(context.Background(), "acme", ref)
			var fe *FetchError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v, want a FetchError", err)
			}
			if fe.Class != tc.class || fe.Status != tc.status || !strings.Contains(fe.Reason, tc.reason) {
				t.Errorf("got %s (HTTP %d): %s, want %s (HTTP %d) containing %q", fe.Class, fe.Status, fe.Reason, tc.class, tc.status, tc.reason)
			}
			if strings.Contains(fe.Reason, token) {
				t.Errorf("reason %q shows the token", fe.Reason)
			}
			if got := srv.Requests(); got != tc.requests {
				t.Errorf("requests: got %d, want %d", got, tc.requests)
			}
		})
	}
}

func TestFetchSendsToken(t *testing.T) {
	srv := newFHIRServer(t, fhirserver.Options{Token: "s3cret"})
	f, _ := newTestFetcher(t, srv, "s3cret", FetchOptions{})
	body, _, err := f.Fetch(context.Background(), "acme", FetchRef{ResourceType: "Patient", ID: "p1", VersionID: "2"})
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != patientV2 {
		t.Fatalf("got %s, want %s", body, patientV2)
	}
	if got := srv.Log()[0].Header.Get("Authorization"); got != "Bearer s3cret" {
		t.Fatalf("Authorization: got %q, want Bearer s3cret", got)
	}
}

// TestFetchStaysOnTheTenantsServer checks that neither a notification's
// base URL nor a redirect can send a read (and its token) to another host.
func TestFetchStaysOnTheTenantsServer(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		_, _ = w.Write([]byte(patientV2))
	}))
	defer other.Close()
	srv := newFHIRServer(t, fhirserver.Options{})
	srv.Redirect("/Patient/p1", other.URL+"/fhir/Patient/p1")
	f, _ := newTestFetcher(t, srv, "s3cret", FetchOptions{})

	_, _, err := f.Fetch(context.Background(), "acme", FetchRef{ResourceType: "Patient", ID: "p1", BaseURL: other.URL + "/fhir"})
	var fe *FetchError
	if !errors.As(err, &fe) || fe.Class != ClassFetchFailed || !strings.Contains(fe.Reason, "refused a redirect") {
		t.Fatalf("got %v, want a refused redirect", err)
	}
	if got := elsewhere.Load(); got != 0 {
		t.Fatalf("the other host got %d requests, want 0", got)
	}
	_, _, err = f.Fetch(context.Background(), "globex", FetchRef{ResourceType: "Patient", ID: "p1", BaseURL: other.URL + "/fhir"})
	if !errors.As(err, &fe) || fe.Class != ClassIDOnly {
		t.Fatalf("unconfigured tenant: got %v, want an %s error", err, ClassIDOnly)
	}
	if got := elsewhere.Load(); got != 0 {
		t.Fatalf("the other host got %d requests, want 0", got)
	}
}

func TestFetchConcurrencyLimit(t *testing.T) {
	srv := newFHIRServer(t, fhirserver.Options{})
	srv.SetLatency(20 * time.Millisecond)
	f, _ := newTestFetcher(t, srv, "", FetchOptions{Concurrency: 3})
	var wg sync.WaitGroup
	errs := make(chan error, 24)
	for range 24 {
		wg.Go(func() {
			_, _, err := f.Fetch(context.Background(), "acme", FetchRef{ResourceType: "Patient", ID: "p1"})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.Requests(); got != 24 {
		t.Fatalf("requests: got %d, want 24", got)
	}
	if got := srv.MaxInFlight(); got > 3 {
		t.Fatalf("in flight at once: got %d, want at most 3", got)
	}
}

func TestFetchRateLimit(t *testing.T) {
	srv := newFHIRServer(t, fhirserver.Options{})
	f, clock := newTestFetcher(t, srv, "", FetchOptions{RatePerSecond: 10, Concurrency: 4})
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, _, err := f.Fetch(context.Background(), "acme", FetchRef{ResourceType: "Patient", ID: "p1"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// With the clock standing still, the ten requests must have been given
	// slots 100 ms apart: waits of 0.1 s, 0.2 s, … 0.9 s (the first goes at
	// once).
	got := clock.nonZero()
	slices.Sort(got)
	var want []time.Duration
	for i := 1; i < 10; i++ {
		want = append(want, time.Duration(i)*100*time.Millisecond)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("waits: got %v, want %v", got, want)
	}
	if got := srv.Requests(); got != 10 {
		t.Fatalf("requests: got %d, want 10", got)
	}
}

func TestFetchTimeoutIsRetried(t *testing.T) {
	srv := newFHIRServer(t, fhirserver.Options{})
	srv.SetLatency(5 * time.Second)
	f, _ := newTestFetcher(t, srv, "", FetchOptions{Timeout: 20 * time.Millisecond, MaxRetries: 1})
	_, _, err := f.Fetch(context.Background(), "acme", FetchRef{ResourceType: "Patient", ID: "p1"})
	var fe *FetchError
	if !errors.As(err, &fe) || fe.Class != ClassFetchFailed || !strings.Contains(fe.Reason, "timeout after 2 attempts") {
		t.Fatalf("got %v, want a timeout after 2 attempts", err)
	}
}

func TestFetchCancelled(t *testing.T) {
	srv := newFHIRServer(t, fhirserver.Options{})
	srv.FailNext(100, 503, nil)
	f, _ := newTestFetcher(t, srv, "", FetchOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := f.Fetch(ctx, "acme", FetchRef{ResourceType: "Patient", ID: "p1"})
	var fe *FetchError
	if err == nil || errors.As(err, &fe) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled and no FetchError (the record must replay)", err)
	}
}

func TestFetchOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts FetchOptions
		ok   bool
	}{
		{"zero values take defaults", FetchOptions{}, true},
		{"no retries", FetchOptions{MaxRetries: -1}, true},
		{"negative concurrency", FetchOptions{Concurrency: -1}, false},
		{"infinite rate", FetchOptions{RatePerSecond: math.Inf(1)}, false},
		{"NaN rate", FetchOptions{RatePerSecond: math.NaN()}, false},
		{"negative timeout", FetchOptions{Timeout: -time.Second}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.opts.Validate(); (err == nil) != tc.ok {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestNewFetcherRejects(t *testing.T) {
	for _, tc := range []struct{ name, base, token, want string }{
		{"no scheme", "fhir.example.org/fhir", "", "want http or https"},
		{"ftp", "ftp://fhir.example.org/fhir", "", "want http or https"},
		{"no host", "https:///fhir", "", "no host"},
		{"credentials in the URL", "https://u:p@fhir.example.org/fhir", "", "credentials"},
		{"query", "https://fhir.example.org/fhir?x=1", "", "query"},
		{"line break in the token", "https://fhir.example.org/fhir", "a\r\nX-Evil: 1", "line break"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewFetcher(FetchOptions{}, map[string]FetchTarget{"acme": {BaseURL: tc.base, Token: tc.token}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"5", 5 * time.Second},
		{"-1", 0},
		{"soon", 0},
		{"Mon, 01 Jan 2024 00:00:30 GMT", 30 * time.Second},
		{"Sun, 31 Dec 2023 23:00:00 GMT", 0},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q): got %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestResolve decodes an id-only notification and completes it from the
// server: the worker's path for id-only payloads.
func TestResolve(t *testing.T) {
	srv := newFHIRServer(t, fhirserver.Options{})
	f, _ := newTestFetcher(t, srv, "", FetchOptions{})
	doc := `{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"SubscriptionStatus","type":"event-notification","status":"active","notificationEvent":[` +
		`{"eventNumber":1,"focus":{"reference":"https://fhir.example.org/fhir/Patient/p1/_history/1"}},` +
		`{"eventNumber":2,"focus":{"reference":"https://fhir.example.org/fhir/Patient/gone"}}]}}]}`
	n, err := Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Resolve(context.Background(), "acme", n); err != nil {
		t.Fatal(err)
	}
	if n.NeedsFetch() {
		t.Fatal("needs fetch after Resolve")
	}
	if got, want := summaries(n), []string{"upsert Patient/p1 v1 resource", "delete Patient/gone"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := string(n.Events[0].Resource); got != patientV1 {
		t.Fatalf("resource: got %s, want %s", got, patientV1)
	}
	if got := n.Events[0].LastUpdated; !got.Equal(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("lastUpdated: got %v, want the fetched resource's", got)
	}

	// One failure fails the record.
	srv.FailNext(100, 401, nil)
	n, _ = Decode([]byte(doc))
	err = f.Resolve(context.Background(), "acme", n)
	var fe *FetchError
	if !errors.As(err, &fe) || fe.Class != ClassFetchFailed {
		t.Fatalf("got %v, want a %s error", err, ClassFetchFailed)
	}
}

func TestFetchSynthea(t *testing.T) {
	dir := testenv.Shared(t, "data", "synthea-small")
	srv := fhirserver.New(fhirserver.Options{DataDir: dir, Token: "t0ken"})
	defer srv.Close()
	f, err := NewFetcher(FetchOptions{}, map[string]FetchTarget{"acme": {BaseURL: srv.URL, Token: "t0ken"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []FetchRef{
		{ResourceType: "Patient", ID: "8ee183e2-b3c0-4151-be94-b945d6aa8c6d"},
		{ResourceType: "Observation", ID: "a7b38940-3cd3-43b1-bba9-6adb6090d1d3", VersionID: "1"},
	} {
		body, deleted, err := f.Fetch(context.Background(), "acme", ref)
		if err != nil || deleted {
			t.Fatalf("%s/%s: got deleted=%v, %v", ref.ResourceType, ref.ID, deleted, err)
		}
		ev := Event{Operation: OpUpsert, ResourceType: ref.ResourceType, ID: ref.ID, Fetch: &ref}
		if err := ev.ApplyFetch(body, deleted); err != nil {
			t.Fatal(err)
		}
		if ev.Resource == nil || ev.Fetch != nil {
			t.Fatalf("got %s, want a resource", summary(ev))
		}
	}
}
