package consumer

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"fhirlake/sink"
)

// flushGroup makes the batches of partitions flushed together (by a
// memory event, by age in step, at the end of a catch-up) durable together.
// A file costs the encoder about 2.5 ms whatever its rows (registering the
// Arrow stream, binding the COPY, a writer and statistics per column), and
// every partition's batch holds a file per tenant and dataset, so the group
// writes one file per tenant, dataset and date for all its batches: half
// the files when two partitions flush, a sixth when six do. A file holding
// several partitions' rows is named after all their ranges (MergedKey);
// readers find partitions and offsets in the lineage columns, not in names.
//
// Each member joins with its batch when it seals, or leaves when it holds
// nothing or stops first. Once every member has, the group encodes and
// uploads the files, retrying like a partition's own flush, while each
// member's flusher waits for it and then commits only its own partition's
// offsets, in order with the partition's other batches. A member whose
// partition is lost meanwhile commits nothing; the group still writes its
// rows, which its next owner replays into files of their own, so readers
// drop them as they drop any replayed copy (the lineage columns name the
// resource version and row). The group gives up only once every member is
// gone.
type flushGroup struct {
	c      *Consumer
	reason string // the flush reason of every member

	mu      sync.Mutex
	pending int // members that have neither joined nor left
	joined  []*groupMember
	live    int // joined members not yet cancelled
	started bool

	ctx    context.Context // the group's work; cancelled once no member is left to commit
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed: the files are not durable
}

type groupMember struct {
	w     *worker
	b     *batch
	stop  func() bool // unregisters the cancellation callback
	files []sink.File
	bytes int64
}

func newFlushGroup(c *Consumer, reason string) *flushGroup {
	ctx, cancel := context.WithCancel(context.Background())
	return &flushGroup{c: c, reason: reason, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// expect counts one more member, signalled by flushLargest.
func (g *flushGroup) expect() {
	g.mu.Lock()
	g.pending++
	g.mu.Unlock()
}

// join hands b to the group: the group owns its records and their share
// of Consumer.sealed from now on.
func (g *flushGroup) join(w *worker, b *batch) {
	m := &groupMember{w: w, b: b, files: b.files, bytes: b.bytes}
	b.files, b.bytes = nil, 0
	b.group = g
	g.mu.Lock()
	g.joined = append(g.joined, m)
	g.live++
	g.pending--
	g.mu.Unlock()
	m.stop = context.AfterFunc(w.ctx, g.memberGone)
	g.maybeStart()
}

// forming reports whether members may still join.
func (g *flushGroup) forming() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending > 0
}

// leave records that a signalled member will not join.
func (g *flushGroup) leave() {
	g.mu.Lock()
	g.pending--
	g.mu.Unlock()
	g.maybeStart()
}

// memberGone runs when a joined member's worker is cancelled: its
// partition is no longer ours to commit.
func (g *flushGroup) memberGone() {
	g.mu.Lock()
	g.live--
	gone := g.live == 0 && g.pending == 0
	g.mu.Unlock()
	if gone {
		g.cancel()
	}
}

func (g *flushGroup) maybeStart() {
	g.mu.Lock()
	if g.pending > 0 || g.started {
		g.mu.Unlock()
		return
	}
	g.started = true
	empty := len(g.joined) == 0
	gone := g.live == 0
	g.mu.Unlock()
	if empty {
		g.err = errors.New("flush group: no member joined")
		g.cancel()
		close(g.done)
		return
	}
	if gone {
		g.cancel()
	}
	go g.run()
}

// wait blocks until the group's files are durable, or the member's worker
// is cancelled.
func (g *flushGroup) wait(ctx context.Context) error {
	select {
	case <-g.done:
		return g.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *flushGroup) run() {
	defer close(g.done)
	defer g.cancel()
	defer func() {
		for _, m := range g.joined {
			m.stop()
		}
	}()
	c := g.c
	files, bytes := g.files()
	release := func() {
		for _, f := range files {
			f.Release()
		}
		files = nil
		c.sealed.Add(-bytes)
		bytes = 0
	}
	defer release()
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = 10 * time.Second
	var enc *sink.Encoded
	defer func() { enc.Remove() }()
	for attempt := 1; ; attempt++ {
		err := g.ctx.Err()
		if err == nil && enc == nil {
			enc, err = c.writer.Encode(g.ctx, files)
			if err == nil {
				// The local files are all a retry needs.
				release()
			}
		}
		if err == nil {
			_, err = c.writer.Upload(g.ctx, enc)
		}
		if err == nil {
			return
		}
		if g.ctx.Err() != nil {
			g.err = err
			c.log.Warn("group flush abandoned: every member's partition is gone; their records will replay", "err", err)
			return
		}
		c.m.flushErrors.Inc()
		wait := bo.NextBackOff()
		lvl := "group flush failed; retrying"
		if errors.Is(err, sink.ErrAccessDenied) {
			lvl = "group flush refused by a tenant store (access denied); not committing, retrying"
		}
		c.log.Error(lvl, "partitions", len(g.joined), "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-g.ctx.Done():
		}
	}
}

// files merges the members' files: for each tenant, dataset, topic and
// date one file holding every member's rows, in partition order.
func (g *flushGroup) files() ([]sink.File, int64) {
	g.mu.Lock()
	members := slices.Clone(g.joined)
	g.mu.Unlock()
	slices.SortFunc(members, func(a, b *groupMember) int {
		return cmp.Or(cmp.Compare(a.w.topic, b.w.topic), cmp.Compare(a.w.partition, b.w.partition))
	})
	type key struct {
		tenant, view, topic, date string
	}
	type merged struct {
		file   sink.File
		date   time.Time
		ranges []sink.Range
	}
	var out []sink.File
	var bytes int64
	byKey := map[key]*merged{}
	var order []key
	for _, m := range members {
		bytes += m.bytes
		for _, f := range m.files {
			k := key{f.Tenant, f.View, m.w.topic, m.b.date.UTC().Format(time.DateOnly)}
			mf := byKey[k]
			if mf == nil {
				mf = &merged{file: sink.File{Tenant: f.Tenant, View: f.View, Key: f.Key}, date: m.b.date}
				byKey[k] = mf
				order = append(order, k)
			}
			mf.file.Records = append(mf.file.Records, f.Records...)
			mf.ranges = append(mf.ranges, sink.Range{Partition: m.w.partition, First: m.b.first, Last: m.b.last})
		}
	}
	for _, k := range order {
		mf := byKey[k]
		if len(mf.ranges) > 1 {
			mf.file.Key = sink.MergedKey(k.view, mf.date, k.topic, mf.ranges)
		}
		out = append(out, mf.file)
	}
	return out, bytes
}
