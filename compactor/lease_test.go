package compactor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"fhirlake/lake"
	"fhirlake/sink"
)

// hookRunner is a fakeRunner that calls before at the start of each build; an error
// from it is the build's.
type hookRunner struct {
	*fakeRunner
	before func(ctx context.Context) error
}

func (h *hookRunner) Build(ctx context.Context, req BuildRequest) (*RunResults, error) {
	if err := h.before(ctx); err != nil {
		return nil, err
	}
	return h.fakeRunner.Build(ctx, req)
}

// gate is a build that waits, once started, until it is opened.
type gate struct{ entered, open chan struct{} }

func newGate() *gate { return &gate{entered: make(chan struct{}), open: make(chan struct{})} }

func (g *gate) before(ctx context.Context) error {
	close(g.entered)
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

type outcome struct {
	res *Result
	err error
}

// compactAsync runs c.Compact in a goroutine; the test waits for its outcome.
func compactAsync(c *Compactor, ten Tenant) <-chan outcome {
	done := make(chan outcome, 1)
	go func() {
		res, err := c.Compact(context.Background(), ten)
		done <- outcome{res, err}
	}()
	return done
}

func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatalf("%s: not within a minute", what)
		panic("unreachable")
	}
}

// placeLease writes a lease as another compactor would, replacing any.
func placeLease(t *testing.T, store sink.Store, l lake.Lease) {
	t.Helper()
	b, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "lease.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := store.Put(context.Background(), lake.LeaseKey, p); err != nil {
		t.Fatal(err)
	}
}

// otherHolder is a lease of a compactor on another host, renewed at renewed.
func otherHolder(renewed time.Time, ttl time.Duration) lake.Lease {
	return lake.Lease{Version: lake.LeaseVersion, Tenant: "acme", Holder: lake.Holder{Host: "compactor-7", PID: 31337, RunID: "feedfacecafebeef"},
		Acquired: renewed.Add(-time.Hour).UTC(), Renewed: renewed.UTC(), Expires: renewed.Add(ttl).UTC()}
}

func counter(t *testing.T, c *prometheus.CounterVec, tenant string) float64 {
	t.Helper()
	return testutil.ToFloat64(c.WithLabelValues(tenant))
}

// TestLeaseSecondRunExits: while one run builds, a second run of the same tenant
// (another compactor in the same process, so another run id) does nothing and says
// who holds the tenant; the first publishes and releases the lease.
func TestLeaseSecondRunExits(t *testing.T) {
	ten, store := newTenant(t, "acme")
	addSpeed(t, store, "resources", "t-0-0-9")
	g := newGate()
	first := newTestCompactor(t, &hookRunner{&fakeRunner{}, g.before}, nil, nil)
	done := compactAsync(first, ten)
	await(t, g.entered, "the first run's build")

	secondRunner := &fakeRunner{}
	reg := prometheus.NewRegistry()
	second := newTestCompactor(t, secondRunner, reg, nil)
	res, err := second.Compact(context.Background(), ten)
	var held *LeaseHeldError
	if !errors.As(err, &held) {
		t.Fatalf("second run: got %v, want a *LeaseHeldError", err)
	}
	host, _ := os.Hostname()
	for _, want := range []string{"tenant acme:", "another compactor", "host " + host, fmt.Sprintf("pid %d", os.Getpid()), "since " + held.Lease.Acquired.Format(time.RFC3339)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	if res == nil || res.Held == nil || res.Held.Holder != held.Lease.Holder || res.Published {
		t.Errorf("second run's result: %+v", res)
	}
	if len(secondRunner.requests) != 0 {
		t.Errorf("the second run ran dbt %d times", len(secondRunner.requests))
	}
	if got := counter(t, second.metrics.leaseHeld, "acme"); got != 1 {
		t.Errorf("fhirlake_compactor_lease_held_total: got %v, want 1", got)
	}
	if n := histogramCount(t, reg, "fhirlake_compactor_duration_seconds"); n != 0 {
		t.Errorf("a run that did nothing was timed: %d observations", n)
	}

	close(g.open)
	out := await(t, done, "the first run")
	if out.err != nil || !out.res.Published {
		t.Fatalf("first run: %+v, %v", out.res, out.err)
	}
	if _, _, err := readLease(context.Background(), store); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the lease after the run: %v, want it deleted", err)
	}
	if res, err := second.Compact(context.Background(), ten); err != nil || !res.UpToDate {
		t.Errorf("the second compactor once the lease is free: %+v, %v", res, err)
	}
}

// TestLeaseWaitsForHolder: with Lease.Wait, the second run waits for the first to
// publish and builds on its snapshot.
func TestLeaseWaitsForHolder(t *testing.T) {
	ten, store := newTenant(t, "acme")
	addSpeed(t, store, "resources", "t-0-0-9")
	g := newGate()
	first := newTestCompactor(t, &hookRunner{&fakeRunner{}, g.before}, nil, func(o *Options) { o.Lease.TTL = time.Second })
	firstDone := compactAsync(first, ten)
	await(t, g.entered, "the first run's build")
	time.Sleep(10 * time.Millisecond) // a newer file, which the first run did not plan
	addSpeed(t, store, "resources", "t-0-10-19")

	second := newTestCompactor(t, &fakeRunner{}, nil, func(o *Options) { o.Lease = LeaseOptions{TTL: time.Second, Wait: time.Minute} })
	secondDone := compactAsync(second, ten)
	close(g.open)
	a, b := await(t, firstDone, "the first run"), await(t, secondDone, "the second run")
	if a.err != nil || b.err != nil || !a.res.Published || !b.res.Published {
		t.Fatalf("runs: %+v, %v; %+v, %v", a.res, a.err, b.res, b.err)
	}
	m, err := sink.ReadManifest(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	if m.SnapshotID != b.res.SnapshotID || len(m.History) == 0 || m.History[0] != a.res.SnapshotID {
		t.Errorf("manifest: snapshot %s, history %v; want the second run's, after the first's %s", m.SnapshotID, m.History, a.res.SnapshotID)
	}
}

// TestLeaseExpiredTakeover: a lease whose holder died (it is not renewed) keeps the
// tenant until it expires; then a run takes it over and publishes.
func TestLeaseExpiredTakeover(t *testing.T) {
	t.Run("expired", func(t *testing.T) {
		ten, store := newTenant(t, "acme")
		addSpeed(t, store, "resources", "t-0-0-9")
		placeLease(t, store, otherHolder(time.Now().Add(-3*time.Minute), 2*time.Minute))
		c := newTestCompactor(t, &fakeRunner{}, nil, nil)
		res, err := c.Compact(context.Background(), ten)
		if err != nil || !res.Published {
			t.Fatalf("got %+v, %v; want a publication", res, err)
		}
		if got := counter(t, c.metrics.leaseTakeovers, "acme"); got != 1 {
			t.Errorf("fhirlake_compactor_lease_takeovers_total: got %v, want 1", got)
		}
		if _, _, err := readLease(context.Background(), store); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the lease after the run: %v, want it deleted", err)
		}
	})
	t.Run("not yet expired", func(t *testing.T) {
		ten, store := newTenant(t, "acme")
		addSpeed(t, store, "resources", "t-0-0-9")
		dead := otherHolder(time.Now(), 500*time.Millisecond)
		placeLease(t, store, dead)
		r := &fakeRunner{}
		c := newTestCompactor(t, r, nil, func(o *Options) { o.Lease.TTL = time.Second })
		_, err := c.Compact(context.Background(), ten)
		if !errors.As(err, new(*LeaseHeldError)) || !strings.Contains(err.Error(), "host compactor-7, pid 31337") {
			t.Fatalf("got %v, want the lease of compactor-7 named", err)
		}
		if len(r.requests) != 0 {
			t.Fatal("ran under another's lease")
		}
		c.opts.Lease.Wait = time.Minute
		res, err := c.Compact(context.Background(), ten)
		if err != nil || !res.Published {
			t.Fatalf("waiting for the lease to expire: %+v, %v", res, err)
		}
		if now := time.Now(); now.Before(dead.Expires) {
			t.Errorf("took the lease at %s, before it expired at %s", now, dead.Expires)
		}
	})
}

// TestLeaseRenewal: a run that lasts several TTLs keeps its lease.
func TestLeaseRenewal(t *testing.T) {
	ten, store := newTenant(t, "acme")
	addSpeed(t, store, "resources", "t-0-0-9")
	const ttl = 600 * time.Millisecond
	renewedPastTTL := func(ctx context.Context) error {
		for ctx.Err() == nil {
			l, _, err := readLease(ctx, store)
			if err != nil {
				return err
			}
			if l.Renewed.After(l.Acquired.Add(2 * ttl)) {
				return nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		return context.Cause(ctx)
	}
	g := newGate()
	c := newTestCompactor(t, &hookRunner{&fakeRunner{}, func(ctx context.Context) error {
		if err := renewedPastTTL(ctx); err != nil {
			return err
		}
		return g.before(ctx)
	}}, nil, func(o *Options) { o.Lease.TTL = ttl })
	done := compactAsync(c, ten)
	await(t, g.entered, "a renewal past twice the TTL")
	other := newTestCompactor(t, &fakeRunner{}, nil, func(o *Options) { o.Lease.TTL = ttl })
	if _, err := other.Compact(context.Background(), ten); !errors.As(err, new(*LeaseHeldError)) {
		t.Errorf("a run after %s of renewals: got %v, want the lease held", 2*ttl, err)
	}
	close(g.open)
	if out := await(t, done, "the run"); out.err != nil || !out.res.Published {
		t.Fatalf("run: %+v, %v", out.res, out.err)
	}
}

// flakyStore fails lease renewals while failRenew is set.
type flakyStore struct {
	*recordingStore
	failRenew atomic.Bool
}

func (s *flakyStore) PutIfMatch(ctx context.Context, key string, body []byte, tag string) (string, error) {
	if s.failRenew.Load() {
		return "", errors.New("connection reset by peer")
	}
	return s.recordingStore.PutIfMatch(ctx, key, body, tag)
}

// TestLeaseLostPreventsPublication: a run whose lease was taken over, or could not
// be renewed before it lapsed, publishes nothing, says why, and leaves the new
// holder's lease alone.
func TestLeaseLostPreventsPublication(t *testing.T) {
	tests := []struct {
		name string
		ttl  time.Duration
		// during runs in the build; ctx is the run's.
		during func(t *testing.T, ctx context.Context, s *flakyStore) error
		err    string
	}{
		{"taken over, noticed before publication", time.Hour, func(t *testing.T, ctx context.Context, s *flakyStore) error {
			placeLease(t, s, otherHolder(time.Now(), time.Hour))
			return nil
		}, "host compactor-7, pid 31337 (run feedfacecafebeef) took it over"},
		{"taken over, noticed by the renewal during the build", 300 * time.Millisecond, func(t *testing.T, ctx context.Context, s *flakyStore) error {
			placeLease(t, s, otherHolder(time.Now(), time.Hour))
			<-ctx.Done()
			return fmt.Errorf("dbt build: %w", ctx.Err())
		}, "took it over"},
		{"not renewed before it lapsed", 300 * time.Millisecond, func(t *testing.T, ctx context.Context, s *flakyStore) error {
			s.failRenew.Store(true)
			<-ctx.Done()
			return fmt.Errorf("dbt build: %w", ctx.Err())
		}, "not renewed before it lapsed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ten, rs := newTenant(t, "acme")
			store := &flakyStore{recordingStore: rs}
			ten.Store = store
			addSpeed(t, store, "resources", "t-0-0-9")
			runner := &hookRunner{&fakeRunner{}, func(ctx context.Context) error {
				wait, cancel := context.WithTimeout(ctx, time.Minute) // bounds a test that would hang
				defer cancel()
				return tc.during(t, wait, store)
			}}
			c := newTestCompactor(t, runner, nil, func(o *Options) { o.Lease.TTL = tc.ttl })
			res, err := c.Compact(context.Background(), ten)
			if !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want the lost lease (%s)", err, tc.err)
			}
			if res.Published || slices.Contains(rs.putKeys(), lake.ManifestKey) {
				t.Errorf("published after the lease was lost: %+v, puts %v", res, rs.putKeys())
			}
			if m, err := sink.ReadManifest(context.Background(), store); m != nil || err != nil {
				t.Errorf("manifest: %v, %v; want none", m, err)
			}
			if got := counter(t, c.metrics.leaseLost, "acme"); got != 1 {
				t.Errorf("fhirlake_compactor_lease_lost_total: got %v, want 1", got)
			}
			if got := value(t, c.metrics.halted.WithLabelValues("acme")); got != 1 {
				t.Errorf("halted: got %v, want 1", got)
			}
			store.failRenew.Store(false)
			l, _, err := readLease(context.Background(), store)
			switch {
			case strings.Contains(tc.name, "taken over") && (err != nil || l.Holder.PID != 31337):
				t.Errorf("the new holder's lease: %+v, %v; want it kept", l, err)
			case !strings.Contains(tc.name, "taken over") && err == nil && !l.Expired(time.Now()):
				t.Errorf("a lapsed lease is live again: %+v", l)
			}
		})
	}
}

// TestLeaseUnreadable: a lease that is not one is never overwritten; the error says
// what to do.
func TestLeaseUnreadable(t *testing.T) {
	ten, store := newTenant(t, "acme")
	addSpeed(t, store, "resources", "t-0-0-9")
	p := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := store.Put(context.Background(), lake.LeaseKey, p); err != nil {
		t.Fatal(err)
	}
	r := &fakeRunner{}
	_, err := newTestCompactor(t, r, nil, nil).Compact(context.Background(), ten)
	if err == nil || !strings.Contains(err.Error(), lake.LeaseKey) || !strings.Contains(err.Error(), "delete it") || len(r.requests) != 0 {
		t.Errorf("got %v after %d builds, want an error naming %s", err, len(r.requests), lake.LeaseKey)
	}
}
