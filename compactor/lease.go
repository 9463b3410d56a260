package compactor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"fhirlake/lake"
	"fhirlake/sink"
)

// LeaseOptions configure the lease that makes a compactor the only one working on
// a tenant (lake.LeaseKey, docs/format/lease.md).
type LeaseOptions struct {
	// TTL is how long a lease lasts unless renewed; the holder renews it every
	// TTL/3. A compactor that dies keeps its tenants from the others for at most
	// TTL, and one that cannot renew for TTL stops before it publishes. Clocks of
	// the hosts running compactors must agree to well within it. Default: 2m.
	TTL time.Duration
	// Wait is how long a run waits for a lease another compactor holds before it
	// gives up with a *LeaseHeldError. Default: 0, give up at once.
	Wait time.Duration
}

// LeaseHeldError is a run that did not start because another compactor holds the
// tenant's lease.
type LeaseHeldError struct {
	Lease lake.Lease
}

func (e *LeaseHeldError) Error() string {
	h := e.Lease.Holder
	return fmt.Sprintf("another compactor is working on this tenant: host %s, pid %d (run %s) has held its lease %s since %s; it lapses at %s unless renewed",
		h.Host, h.PID, h.RunID, lake.LeaseKey, e.Lease.Acquired.Format(time.RFC3339), e.Lease.Expires.Format(time.RFC3339))
}

// ErrLeaseLost ends a run whose lease lapsed or was taken over: it publishes
// nothing from then on.
var ErrLeaseLost = errors.New("compaction lease lost")

// lease is a tenant's lease as its holder keeps it. Its renewal goroutine is
// started by takeLease and stopped by release; losing the lease cancels ctx.
type lease struct {
	store sink.Store
	ttl   time.Duration
	now   func() time.Time
	log   *slog.Logger
	// lostTotal counts the tenant's lost leases.
	lostTotal prometheus.Counter
	// ctx is the run's context, cancelled with ErrLeaseLost when the lease is lost.
	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   chan struct{}
	done   chan struct{}

	// mu guards doc, tag and lost, and is held across a renewal's round trip so
	// that the renewal goroutine and confirm never interleave their writes.
	mu   sync.Mutex
	doc  lake.Lease
	tag  string
	lost error
}

// leasePoll is how often a waiting run looks at a held lease again.
func leasePoll(ttl time.Duration) time.Duration {
	return min(max(ttl/4, 100*time.Millisecond), 5*time.Second)
}

// takeLease takes the tenant's lease for a run, waiting up to o.Wait while another
// compactor holds it, and starts renewing it. The returned lease's ctx is the
// run's context from then on.
func (c *Compactor) takeLease(ctx context.Context, t Tenant, log *slog.Logger) (*lease, error) {
	o := c.opts.Lease
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	holder := lake.Holder{Host: host, PID: os.Getpid(), RunID: lake.NewRunID()}
	start := c.now()
	giveUp := start.Add(o.Wait)
	waiting, raced := false, 0
	for {
		doc, tag, held, err := c.tryLease(ctx, t, holder)
		if err != nil {
			return nil, err
		}
		if tag != "" {
			if waiting {
				log.Info("took the compaction lease after waiting", "waited", c.now().Sub(start).Round(time.Millisecond))
			}
			return c.keepLease(ctx, t, doc, tag, log), nil
		}
		if held == nil && raced < 3 {
			raced++ // released or replaced while we looked: try again at once
			continue
		}
		raced = 0
		now := c.now()
		if held != nil && !now.Before(giveUp) {
			c.metrics.leaseHeld.WithLabelValues(t.Name).Inc()
			return nil, &LeaseHeldError{Lease: *held}
		}
		if held != nil && !waiting {
			waiting = true
			log.Info("waiting for the compaction lease another compactor holds", "holder_host", held.Holder.Host,
				"holder_pid", held.Holder.PID, "holder_run", held.Holder.RunID, "since", held.Acquired, "expires", held.Expires, "wait", o.Wait)
		}
		timer := time.NewTimer(max(min(leasePoll(o.TTL), giveUp.Sub(now)), time.Millisecond))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, context.Cause(ctx)
		case <-timer.C:
		}
	}
}

// tryLease tries once to take the lease for holder: create it, adopt it if this
// holder's earlier attempt created it, or take it over if it expired. It returns
// the lease taken and its tag, or the lease another holds, or neither when the
// lease changed while it looked (to try again).
func (c *Compactor) tryLease(ctx context.Context, t Tenant, holder lake.Holder) (doc lake.Lease, tag string, held *lake.Lease, err error) {
	now := c.now().UTC()
	doc = lake.Lease{Version: lake.LeaseVersion, Tenant: t.Name, Holder: holder, Acquired: now, Renewed: now, Expires: now.Add(c.opts.Lease.TTL)}
	body, err := doc.Encode()
	if err != nil {
		return doc, "", nil, err
	}
	tag, err = t.Store.PutIfAbsent(ctx, lake.LeaseKey, body)
	if err == nil {
		return doc, tag, nil, nil
	}
	if !errors.Is(err, sink.ErrPreconditionFailed) {
		return doc, "", nil, fmt.Errorf("take lease: %w", err)
	}
	cur, curTag, err := readLease(ctx, t.Store)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return doc, "", nil, nil
	case err != nil:
		return doc, "", nil, err
	case cur.Holder == holder:
		return *cur, curTag, nil, nil
	case !cur.Expired(now):
		return doc, "", cur, nil
	}
	tag, err = t.Store.PutIfMatch(ctx, lake.LeaseKey, body, curTag)
	switch {
	case errors.Is(err, sink.ErrPreconditionFailed):
		return doc, "", nil, nil
	case err != nil:
		return doc, "", nil, fmt.Errorf("take over expired lease: %w", err)
	}
	c.metrics.leaseTakeovers.WithLabelValues(t.Name).Inc()
	c.log.Warn("took over an expired compaction lease: its holder stopped renewing it", "tenant", t.Name,
		"holder_host", cur.Holder.Host, "holder_pid", cur.Holder.PID, "holder_run", cur.Holder.RunID, "since", cur.Acquired, "expired", cur.Expires)
	return doc, tag, nil, nil
}

// readLease reads the lease at lake.LeaseKey and its tag; fs.ErrNotExist when
// there is none.
func readLease(ctx context.Context, store sink.Store) (*lake.Lease, string, error) {
	var buf bytes.Buffer
	tag, err := store.GetTagged(ctx, lake.LeaseKey, &buf)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", err
		}
		return nil, "", fmt.Errorf("read lease: %w", err)
	}
	l, err := lake.DecodeLease(buf.Bytes())
	if err != nil {
		return nil, "", fmt.Errorf("%w; if no compactor is running for this tenant, delete it", err)
	}
	return l, tag, nil
}

// keepLease starts renewing a lease just taken.
func (c *Compactor) keepLease(ctx context.Context, t Tenant, doc lake.Lease, tag string, log *slog.Logger) *lease {
	l := &lease{store: t.Store, ttl: c.opts.Lease.TTL, now: c.now, log: log, lostTotal: c.metrics.leaseLost.WithLabelValues(t.Name),
		doc: doc, tag: tag, stop: make(chan struct{}), done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancelCause(ctx)
	go l.keep()
	return l
}

// keep renews the lease every TTL/3 (sooner after a failure) until release stops
// it or the lease is lost.
func (l *lease) keep() {
	defer close(l.done)
	timer := time.NewTimer(l.ttl / 3)
	defer timer.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-timer.C:
		}
		if l.ctx.Err() != nil {
			<-l.stop // the run is ending anyway; release deletes the lease
			return
		}
		next := l.ttl / 3
		if err := l.renew(l.ctx); err != nil {
			if errors.Is(err, ErrLeaseLost) {
				return
			}
			l.log.Warn("renew compaction lease; retrying", "err", err, "expires", l.expires())
			next = l.ttl / 12
		}
		timer.Reset(next)
	}
}

func (l *lease) expires() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.doc.Expires
}

// renew extends the lease by TTL from now, if it is still this holder's version.
// An error wrapping ErrLeaseLost is final; any other may clear on a retry before
// the lease expires.
func (l *lease) renew(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return l.lost
	}
	now := l.now().UTC()
	if l.doc.Expired(now) {
		return l.lose(fmt.Errorf("%w: not renewed before it lapsed at %s", ErrLeaseLost, l.doc.Expires.Format(time.RFC3339Nano)))
	}
	next := l.doc
	next.Renewed, next.Expires = now, now.Add(l.ttl)
	body, err := next.Encode()
	if err != nil {
		return err
	}
	// A renewal that cannot land before the lease lapses is no renewal.
	rctx, cancel := context.WithDeadline(ctx, l.doc.Expires)
	defer cancel()
	tag, err := l.store.PutIfMatch(rctx, lake.LeaseKey, body, l.tag)
	if err == nil {
		l.doc, l.tag = next, tag
		return nil
	}
	if !errors.Is(err, sink.ErrPreconditionFailed) {
		return fmt.Errorf("renew lease: %w", err)
	}
	// Changed: by an earlier renewal of ours whose answer was lost, or by another.
	cur, curTag, rerr := readLease(rctx, l.store)
	switch {
	case rerr == nil && cur.Holder == l.doc.Holder:
		l.doc, l.tag = *cur, curTag
		return nil
	case rerr == nil:
		return l.lose(fmt.Errorf("%w: host %s, pid %d (run %s) took it over at %s", ErrLeaseLost,
			cur.Holder.Host, cur.Holder.PID, cur.Holder.RunID, cur.Acquired.Format(time.RFC3339)))
	case errors.Is(rerr, fs.ErrNotExist):
		return l.lose(fmt.Errorf("%w: %s was deleted", ErrLeaseLost, lake.LeaseKey))
	}
	return fmt.Errorf("renew lease: %w", rerr)
}

// lose records the loss of the lease and cancels the run; l.mu is held.
func (l *lease) lose(err error) error {
	l.lost = err
	l.lostTotal.Inc()
	l.log.Error("compaction lease lost; the run stops without publishing", "err", err)
	l.cancel(err)
	return err
}

// confirm renews the lease now, retrying until it lapses, and returns when the
// renewed lease expires: a write that must happen under the lease (publishing the
// manifest) is bounded by that time. An error means the run must not write.
func (l *lease) confirm(ctx context.Context) (time.Time, error) {
	for {
		err := l.renew(ctx)
		if err == nil {
			return l.expires(), nil
		}
		if errors.Is(err, ErrLeaseLost) {
			return time.Time{}, err
		}
		l.log.Warn("confirm compaction lease; retrying", "err", err)
		timer := time.NewTimer(l.ttl / 12)
		select {
		case <-ctx.Done():
			timer.Stop()
			return time.Time{}, context.Cause(ctx)
		case <-timer.C:
		}
	}
}

// explain makes err of a run whose lease was lost say so: the run stopped because
// of the loss, whatever step noticed its cancellation.
func (l *lease) explain(err error) error {
	l.mu.Lock()
	lost := l.lost
	l.mu.Unlock()
	if err == nil || lost == nil || errors.Is(err, ErrLeaseLost) {
		return err
	}
	return fmt.Errorf("%w (the run stopped at: %w)", lost, err)
}

// release stops renewing and deletes the lease, if it is still this holder's.
// It runs after the run ended, so with its own bounded context.
func (l *lease) release() {
	close(l.stop)
	<-l.done
	defer l.cancel(context.Canceled)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(l.ttl, 30*time.Second))
	defer cancel()
	if err := l.store.DeleteIfMatch(ctx, lake.LeaseKey, l.tag); err != nil {
		l.log.Warn("release compaction lease; it lapses by itself", "expires", l.doc.Expires, "err", err)
	}
}
