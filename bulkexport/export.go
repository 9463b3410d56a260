package bulkexport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// MaxParallel bounds Options.Parallel.
const MaxParallel = 32

// maxErrorMessages bounds the messages kept from a manifest's error files.
const maxErrorMessages = 100

// maxErrorFile bounds the bytes read of one error file.
const maxErrorFile = 16 << 20

// Options configure an export.
type Options struct {
	// Dir holds the export's state file and downloaded files; one directory
	// per request (the caller's choice). It is removed once every file is
	// loaded.
	Dir string
	// HTTP is the client for every request. Default: NewHTTPClient().
	HTTP *http.Client
	// Tokens, when set, gives the bearer token of each request (and of each
	// download, when the manifest requires one).
	Tokens Tokens
	// Parallel bounds the downloads in flight. Default: 4, at most
	// MaxParallel.
	Parallel int
	// MaxRetries bounds the retries of one request after 429, 5xx or a
	// broken connection, and the resumptions of one download. Default: 5.
	MaxRetries int
	// MaxWait caps one wait: a Retry-After, a backoff, the pause between
	// two polls. A server asking for longer is polled sooner. Default: 10m.
	MaxWait time.Duration
	// MaxPollTime bounds the time from the kick-off (or resumption) until
	// the export is complete on the server. Default: 24h.
	MaxPollTime time.Duration
	// IdleTimeout cuts a download that receives nothing for this long; it is
	// then resumed like any broken one. Default: 2m.
	IdleTimeout time.Duration
	// Restart drops the state of an earlier, unfinished run of the request
	// and starts a new export.
	Restart bool
	// Load is given each downloaded file, one at a time, in the caller's
	// goroutine, while further files download. A file is given again after
	// an interruption unless its Load returned nil.
	Load func(ctx context.Context, f File) error
	// Progress, if set, is told what happens. Calls are serialised.
	Progress func(Progress)
	// Sleep waits between polls and retries. Default: a timer, or until ctx
	// ends. Tests record the waits with it.
	Sleep func(ctx context.Context, d time.Duration) error
}

// File is a downloaded file.
type File struct {
	// Kind is "output" (resources) or "deleted" (Bundles of DELETE entries).
	Kind string
	Type string
	URL  string
	// Path is the local file.
	Path string
}

// Progress is a report of an export's progress.
type Progress struct {
	// Status is the server's X-Progress while the export is being built.
	Status string
	// Files is the number of files to load, once the manifest is read;
	// Downloaded and Loaded count them.
	Files, Downloaded, Loaded int
	// Bytes were downloaded since the last report.
	Bytes int64
}

// Result is what an export did.
type Result struct {
	Manifest  *Manifest
	StatusURL string
	// Resumed is set when an earlier run's state was picked up.
	Resumed bool
	// NextSince is where the next export of the same source starts (its
	// _since): the manifest's transactionTime, or the server's Date on the
	// kick-off's answer when that is earlier. A server may stamp the export
	// with a time after it read the data (HAPI FHIR: when the job
	// finalised); a change made in between would otherwise fall between two
	// exports. An overlap only exports a few resources twice.
	NextSince time.Time
	// Built is how long this run waited for the server to build the export:
	// from the kick-off (or the resumed poll) to the manifest; zero when the
	// manifest was already at hand.
	Built time.Duration
	// Files were loaded; Bytes downloaded by this run.
	Files int
	Bytes int64
	// Errors are the messages of the manifest's error files (at most 100),
	// ErrorCount the OperationOutcomes they hold.
	Errors     []string
	ErrorCount int
}

// Export runs req to its end: kick-off (or resumption of an earlier run's
// state in o.Dir), polling, parallel downloads, each file given to o.Load.
func Export(ctx context.Context, req Request, o Options) (*Result, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if o.Dir == "" || o.Load == nil {
		return nil, errors.New("bulkexport: Options.Dir and Options.Load are required")
	}
	o.setDefaults()
	e := &exporter{req: req, o: o, c: &client{hc: o.HTTP, tokens: o.Tokens, maxRetries: o.MaxRetries, maxWait: o.MaxWait, sleep: o.Sleep}}
	return e.run(ctx)
}

func (o *Options) setDefaults() {
	if o.HTTP == nil {
		o.HTTP = NewHTTPClient()
	}
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	o.Parallel = min(o.Parallel, MaxParallel)
	if o.MaxRetries <= 0 {
		o.MaxRetries = 5
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 10 * time.Minute
	}
	if o.MaxPollTime <= 0 {
		o.MaxPollTime = 24 * time.Hour
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	if o.Sleep == nil {
		o.Sleep = sleepCtx
	}
}

// exporter is one run of Export.
type exporter struct {
	req Request
	o   Options
	c   *client

	mu       sync.Mutex // guards st, prog, and serialises Progress and saves
	st       *state
	prog     Progress
	resumed  bool
	gotBytes int64
}

// errGone is a status URL the server no longer knows.
var errGone = errors.New("the server no longer knows the export")

func (e *exporter) run(ctx context.Context) (*Result, error) {
	dir := e.o.Dir
	if e.o.Restart {
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	st, err := readState(dir)
	if err != nil {
		return nil, err
	}
	kick := e.req.KickOff()
	switch {
	case st == nil:
		st = &state{Version: stateVersion, Request: kick}
	case st.Request != kick:
		return nil, fmt.Errorf("%s holds the export of %s, not of %s (start over with --restart)", dir, st.Request, kick)
	default:
		e.resumed = true
	}
	e.st = st
	var built time.Duration
	if st.Manifest == nil {
		start := time.Now()
		if err := e.complete(ctx); err != nil {
			return nil, err
		}
		built = time.Since(start)
	}
	res := &Result{Manifest: st.Manifest, StatusURL: st.StatusURL, Resumed: e.resumed, Built: built, NextSince: st.Manifest.TransactionTime}
	if !st.Accepted.IsZero() && st.Accepted.Before(res.NextSince) {
		res.NextSince = st.Accepted
	}
	if res.Errors, res.ErrorCount, err = e.readErrors(ctx); err != nil {
		return nil, err
	}
	if err := e.transfer(ctx); err != nil {
		return nil, err
	}
	res.Files, res.Bytes = len(st.Files), e.gotBytes
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	return res, nil
}

// complete kicks the export off (unless the state has a status URL), polls
// it until the manifest is ready and records the files to fetch. A resumed
// export the server forgot is started again, once.
func (e *exporter) complete(ctx context.Context) error {
	for try := 0; ; try++ {
		if e.st.StatusURL == "" {
			loc, accepted, err := e.kickOff(ctx)
			if err != nil {
				return err
			}
			if err := e.update(func(st *state) { st.StatusURL, st.Accepted = loc, accepted }); err != nil {
				return err
			}
		}
		m, err := e.poll(ctx)
		if errors.Is(err, errGone) && try == 0 && e.resumed {
			if err := e.update(func(st *state) { st.StatusURL = "" }); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		return e.update(func(st *state) {
			st.Manifest = m
			for _, l := range []struct {
				kind string
				outs []Output
			}{{"output", m.Output}, {"deleted", m.Deleted}} {
				for _, out := range l.outs {
					name := fmt.Sprintf("%05d-%s-%s.ndjson", len(st.Files), l.kind, out.Type)
					st.Files = append(st.Files, fileState{Kind: l.kind, Type: out.Type, URL: out.URL, Name: name})
				}
			}
		})
	}
}

// kickOff asks for the export and returns the status URL and the server's
// Date on the answer (zero when it sent none).
func (e *exporter) kickOff(ctx context.Context) (string, time.Time, error) {
	u := e.req.KickOff()
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	h := http.Header{"Accept": {"application/fhir+json"}, "Prefer": {"respond-async"}}
	resp, err := e.c.send(ctx, "kick-off", u, h, true, retryKickOff)
	if err != nil {
		return "", time.Time{}, err
	}
	if resp.StatusCode != http.StatusAccepted {
		err := statusError("kick-off", u, resp)
		if resp.StatusCode/100 == 2 {
			return "", time.Time{}, fmt.Errorf("%w (a Bulk Data server answers 202 Accepted)", err)
		}
		return "", time.Time{}, err
	}
	discard(resp)
	loc := resp.Header.Get("Content-Location")
	if loc == "" {
		return "", time.Time{}, fmt.Errorf("kick-off %s: 202 Accepted without a Content-Location", u)
	}
	base, _ := url.Parse(u)
	abs, err := fileURL(loc, base)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("kick-off %s: Content-Location: %w", u, err)
	}
	accepted, _ := http.ParseTime(resp.Header.Get("Date"))
	return abs, accepted, nil
}

// poll asks the status URL until the export is complete, and returns the
// manifest.
func (e *exporter) poll(ctx context.Context) (*Manifest, error) {
	u := e.st.StatusURL
	base, err := url.Parse(u)
	if err != nil {
		return nil, fmt.Errorf("status %s: %w", u, err)
	}
	deadline := time.Now().Add(e.o.MaxPollTime)
	h := http.Header{"Accept": {"application/json"}}
	for polls := 0; ; polls++ {
		m, wait, err := e.pollOnce(ctx, u, base, h, polls)
		if err != nil || m != nil {
			return m, err
		}
		if time.Now().Add(wait).After(deadline) {
			return nil, fmt.Errorf("status %s: the export was not complete within %s", u, e.o.MaxPollTime)
		}
		if err := e.o.Sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// pollOnce asks the status URL once: the manifest, or how long to wait.
func (e *exporter) pollOnce(ctx context.Context, u string, base *url.URL, h http.Header, polls int) (*Manifest, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := e.c.send(ctx, "status", u, h, true, retryRead)
	if err != nil {
		return nil, 0, err
	}
	switch resp.StatusCode {
	case http.StatusAccepted:
		wait := e.c.retryAfter(resp.Header, e.c.backoff(polls))
		discard(resp)
		e.report(func(p *Progress) { p.Status = resp.Header.Get("X-Progress") })
		return nil, wait, nil
	case http.StatusOK:
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestBytes+1))
		if err != nil {
			return nil, 0, fmt.Errorf("status %s: read the manifest: %w", u, err)
		}
		m, err := ParseManifest(b, base)
		if err != nil {
			return nil, 0, fmt.Errorf("status %s: %w", u, err)
		}
		return m, 0, nil
	case http.StatusNotFound, http.StatusGone:
		err := statusError("status", u, resp)
		if e.resumed {
			return nil, 0, fmt.Errorf("%w: %w", errGone, err)
		}
		return nil, 0, err
	}
	return nil, 0, statusError("status", u, resp)
}

// readErrors downloads the manifest's error files and reads their
// OperationOutcomes.
func (e *exporter) readErrors(ctx context.Context) (msgs []string, n int, err error) {
	for _, out := range e.st.Manifest.Error {
		left := maxErrorMessages - len(msgs)
		got, lines, err := e.readErrorFile(ctx, out.URL, left)
		if err != nil {
			return nil, 0, err
		}
		msgs = append(msgs, got...)
		n += lines
	}
	return msgs, n, nil
}

func (e *exporter) readErrorFile(ctx context.Context, u string, max int) ([]string, int, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := e.c.send(ctx, "error file", u, http.Header{"Accept": {"application/fhir+ndjson"}}, e.st.Manifest.RequiresAccessToken, retryRead)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, statusError("error file", u, resp)
	}
	defer resp.Body.Close()
	msgs, lines, err := ReadOutcomes(io.LimitReader(resp.Body, maxErrorFile), max)
	if err != nil {
		return nil, 0, fmt.Errorf("error file %s: %w", u, err)
	}
	return msgs, lines, nil
}

// transfer loads the files already downloaded by an earlier run, then
// downloads the others with o.Parallel workers and loads each as it
// arrives. The workers and their feeder are owned by transfer: it waits
// for them on every way out.
func (e *exporter) transfer(ctx context.Context) error {
	var pending []int
	for i, f := range e.st.Files {
		switch {
		case f.Loaded:
		case f.Downloaded:
			if err := e.load(ctx, i); err != nil {
				return err
			}
		default:
			pending = append(pending, i)
		}
	}
	e.report(func(p *Progress) {
		p.Status, p.Files = "", len(e.st.Files)
		for _, f := range e.st.Files {
			if f.Downloaded || f.Loaded {
				p.Downloaded++
			}
			if f.Loaded {
				p.Loaded++
			}
		}
	})
	if len(pending) == 0 {
		return nil
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(wctx)
	jobs := make(chan int)
	done := make(chan int, e.o.Parallel)
	g.Go(func() error {
		defer close(jobs)
		for _, i := range pending {
			select {
			case jobs <- i:
			case <-gctx.Done():
				return nil
			}
		}
		return nil
	})
	for range e.o.Parallel {
		g.Go(func() error {
			for i := range jobs {
				if err := e.download(gctx, i); err != nil {
					return err
				}
				select {
				case done <- i:
				case <-gctx.Done():
					return nil
				}
			}
			return nil
		})
	}
	var loadErr error
	for range pending {
		select {
		case i := <-done:
			loadErr = e.load(ctx, i)
		case <-gctx.Done():
		}
		if loadErr != nil || gctx.Err() != nil {
			break
		}
	}
	cancel()
	werr := g.Wait()
	switch {
	case loadErr != nil:
		return loadErr
	case werr != nil:
		return werr
	}
	return ctx.Err()
}

// load gives file i to o.Load and records it loaded.
func (e *exporter) load(ctx context.Context, i int) error {
	e.mu.Lock()
	f := e.st.Files[i]
	e.mu.Unlock()
	if err := e.o.Load(ctx, File{Kind: f.Kind, Type: f.Type, URL: f.URL, Path: filepath.Join(e.o.Dir, f.Name)}); err != nil {
		return err
	}
	if err := e.update(func(st *state) { st.Files[i].Loaded = true }); err != nil {
		return err
	}
	e.report(func(p *Progress) { p.Loaded++ })
	return nil
}

// update changes the state and saves it.
func (e *exporter) update(change func(*state)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	change(e.st)
	if err := e.st.save(e.o.Dir); err != nil {
		return fmt.Errorf("save the export's state: %w", err)
	}
	return nil
}

// report changes the progress and tells o.Progress; Bytes is reset after
// each report.
func (e *exporter) report(change func(*Progress)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	change(&e.prog)
	e.gotBytes += e.prog.Bytes
	if e.o.Progress != nil {
		e.o.Progress(e.prog)
	}
	e.prog.Bytes = 0
}
