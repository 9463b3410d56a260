package consumer

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"fhirlake/lake"
	"fhirlake/sink"
)

// flushGroup makes the batches of partitions flushed together (by a
// memory event, by age in step, at the end of a catch-up) durable together.
// A file has a fixed cost in the encoder whatever its rows (registering
// the Arrow stream, binding the COPY, a writer and statistics per column),
// and every partition's batch holds a file per tenant and dataset, so the
// group writes one file per tenant, dataset and date for all its batches:
// half the files when two partitions flush, a sixth when six do. A file
// holding several partitions' rows is named after all their ranges
// (MergedKey); readers find partitions and offsets in the lineage columns,
// not in names.
//
// Each member joins with its batch when it seals, or leaves when it holds
// nothing or stops first. Once every member has, or JoinWait has passed
// (a member stuck behind a flush its store refuses then flushes alone
// later), the group encodes and uploads the files, retrying like a
// partition's own flush. Each member's flusher waits until the files
// holding its rows are durable, not the group's other files, and then
// commits only its own partition's offsets, in order with the partition's
// other batches: a tenant whose store refuses holds back only the
// partitions carrying its rows, as without groups. A member whose
// partition is lost meanwhile commits nothing; the group still writes its
// rows, which its next owner replays into files of their own, so readers
// drop them as they drop any replayed copy (the lineage columns name the
// resource version and row). The group gives up once every member still
// waiting is gone.
//
// Goroutines and callbacks: run is started by the last join or leave, or
// by the JoinWait timer (closeJoins, a time.AfterFunc), and returns once
// the files are durable or no member waits for them; then done is closed.
// Each joined member registers a context.AfterFunc on its worker's context
// (memberGone), which run unregisters on its way out.
type flushGroup struct {
	c      *Consumer
	reason flushReason // the flush reason of every member

	// mu guards pending, members, started and each member's state and err.
	// Lock order: Consumer.mu, then mu (Consumer.dueGroup and
	// flushLargest signal members under Consumer.mu); code holding mu never
	// takes another lock, calls into the Consumer or blocks.
	mu      sync.Mutex
	pending int // members that have neither joined nor left
	members []*groupMember
	started bool // joins are closed: run is writing, or the group was empty
	timer   *time.Timer

	ctx    context.Context // the group's work; cancelled once no member waits for it
	cancel context.CancelFunc
	done   chan struct{} // closed when the group's work is over
}

// groupMember is one partition's batch in a group.
type groupMember struct {
	w     *worker
	b     *batch
	stop  func() bool // unregisters the cancellation callback
	files []sink.File
	bytes int64
	held  []int // the group's files holding the member's rows

	done  chan struct{} // closed once they are durable, or the group gave up
	err   error         // set before done is closed when they are not durable
	state memberState   // under the group's lock
}

// memberState is where a member stands. It moves only forward: waiting to
// gone to settled, or waiting to settled.
type memberState int

const (
	memberWaiting memberState = iota // its flusher waits for the files holding its rows
	memberGone                       // its worker was cancelled: its partition is no longer ours to commit
	memberSettled                    // done is closed
)

// JoinWait is how long a group waits for its members to seal before it
// starts without the late ones, and how long a flusher may stay on one
// batch before groups stop waiting for its partition (peer.stuck). Sealing
// takes milliseconds unless the member waits for its flusher to finish
// the previous batch; a second bounds what such a member costs the others.
const JoinWait = time.Second

func newFlushGroup(c *Consumer, reason flushReason) *flushGroup {
	ctx, cancel := context.WithCancel(context.Background())
	g := &flushGroup{c: c, reason: reason, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	g.timer = time.AfterFunc(JoinWait, g.closeJoins)
	return g
}

// expect counts one more member to wait for.
func (g *flushGroup) expect() {
	g.mu.Lock()
	g.pending++
	g.mu.Unlock()
}

// join hands b to the group, which owns its records and their share of
// Consumer.sealed from then on. It returns false when the group has
// already started: the caller flushes b alone.
func (g *flushGroup) join(w *worker, b *batch) bool {
	g.mu.Lock()
	if g.started {
		g.mu.Unlock()
		return false
	}
	m := &groupMember{w: w, b: b, files: b.files, bytes: b.bytes, done: make(chan struct{})}
	b.files, b.bytes = nil, 0
	b.member = m
	g.members = append(g.members, m)
	g.pending--
	g.mu.Unlock()
	m.stop = context.AfterFunc(w.ctx, func() { g.memberGone(m) })
	g.maybeStart()
	return true
}

// leave records that an expected member will not join.
func (g *flushGroup) leave() {
	g.mu.Lock()
	if !g.started {
		g.pending--
	}
	g.mu.Unlock()
	g.maybeStart()
}

// signal asks w to flush as a member; a signal already waiting means w
// flushes anyway, and it is not counted. The caller holds Consumer.mu (see
// there).
func (g *flushGroup) signal(w *worker) bool {
	g.expect()
	select {
	case w.flushNow <- g:
		return true
	default:
		g.leave()
		return false
	}
}

// forming reports whether members may still join.
func (g *flushGroup) forming() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.started && g.pending > 0
}

// closeJoins starts the group with the members that have joined.
func (g *flushGroup) closeJoins() {
	g.mu.Lock()
	if !g.started {
		g.pending = 0
	}
	g.mu.Unlock()
	g.maybeStart()
}

func (g *flushGroup) maybeStart() {
	g.mu.Lock()
	if g.started || g.pending > 0 {
		g.mu.Unlock()
		return
	}
	g.started = true
	g.timer.Stop()
	empty := len(g.members) == 0
	g.mu.Unlock()
	if empty {
		g.cancel()
		close(g.done)
		return
	}
	g.checkWaiting()
	go g.run()
}

// memberGone runs when a joined member's worker is cancelled: its
// partition is no longer ours to commit.
func (g *flushGroup) memberGone(m *groupMember) {
	g.mu.Lock()
	if m.state == memberWaiting {
		m.state = memberGone
	}
	g.mu.Unlock()
	g.checkWaiting()
}

// checkWaiting stops the group's work once no member waits for it.
func (g *flushGroup) checkWaiting() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.started {
		return
	}
	for _, m := range g.members {
		if m.state == memberWaiting {
			return
		}
	}
	g.cancel()
}

// finish tells a member its files are durable (err nil) or will not be.
func (g *flushGroup) finish(m *groupMember, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if m.state == memberSettled {
		return
	}
	m.err, m.state = err, memberSettled
	close(m.done)
}

// wait blocks until the files holding m's rows are durable, or ctx (the
// member's worker's) is done.
func (m *groupMember) wait(ctx context.Context) error {
	select {
	case <-m.done:
		return m.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the group's goroutine: it encodes the members' files merged, then
// uploads them, retrying until they are durable or no member waits for
// them.
func (g *flushGroup) run() {
	defer close(g.done)
	defer g.cancel()
	defer g.unregister()
	c := g.c
	files, bytes := g.files()
	for _, m := range g.members {
		if len(m.held) == 0 {
			g.finish(m, nil) // only control messages or dead letters
		}
	}
	release := func() {
		for _, f := range files {
			f.Release()
		}
		files = nil
		if bytes > 0 {
			c.releaseSealed(bytes) // and wake a poll loop paused for memory
		}
		bytes = 0
	}
	defer release()
	bo := flushBackoff()
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
		if enc != nil && err == nil {
			_, err = c.writer.UploadNotify(g.ctx, enc, func(int) { g.settle(enc) })
		}
		if err == nil {
			return
		}
		if g.ctx.Err() != nil {
			g.abandon(err)
			return
		}
		wait := c.flushFailed(bo, err, "group flush", "partitions", len(g.members), "attempt", attempt)
		select {
		case <-time.After(wait):
		case <-g.ctx.Done():
		}
	}
}

// settle finishes every member whose files are all durable: a member goes
// on once the files holding its rows are, whatever the group's other files
// do.
func (g *flushGroup) settle(enc *sink.Encoded) {
	for _, m := range g.members {
		if !slices.ContainsFunc(m.held, func(i int) bool { return !enc.Durable(i) }) {
			g.finish(m, nil)
		}
	}
}

// abandon finishes every member with err: no member waits for the group
// any more.
func (g *flushGroup) abandon(err error) {
	for _, m := range g.members {
		g.finish(m, err)
	}
	g.c.log.Warn("group flush abandoned: every partition waiting for it is gone; their records will replay", "err", err)
}

// unregister removes the members' cancellation callbacks (memberGone) once
// the group's work is over.
func (g *flushGroup) unregister() {
	for _, m := range g.members {
		m.stop()
	}
}

// files merges the members' files: for each tenant, dataset, topic and
// date one file holding every member's rows, in partition order. It sets
// each member's held files.
func (g *flushGroup) files() ([]sink.File, int64) {
	g.mu.Lock()
	members := slices.Clone(g.members)
	g.mu.Unlock()
	slices.SortFunc(members, func(a, b *groupMember) int {
		return cmp.Or(cmp.Compare(a.w.topic, b.w.topic), cmp.Compare(a.w.partition, b.w.partition))
	})
	type key struct {
		tenant, view, topic, date string
	}
	type merged struct {
		file   sink.File
		topic  string
		date   time.Time
		ranges []lake.Range
		index  int
	}
	var bytes int64
	byKey := map[key]*merged{}
	var order []*merged
	for _, m := range members {
		bytes += m.bytes
		for _, f := range m.files {
			k := key{f.Tenant, f.View, m.w.topic, m.b.date.UTC().Format(time.DateOnly)}
			mf := byKey[k]
			if mf == nil {
				mf = &merged{file: sink.File{Tenant: f.Tenant, View: f.View, Key: f.Key}, topic: m.w.topic, date: m.b.date, index: len(order)}
				byKey[k] = mf
				order = append(order, mf)
			}
			mf.file.Records = append(mf.file.Records, f.Records...)
			mf.ranges = append(mf.ranges, lake.Range{Partition: m.w.partition, First: m.b.first, Last: m.b.last})
			if !slices.Contains(m.held, mf.index) {
				m.held = append(m.held, mf.index)
			}
		}
		m.files = nil
	}
	out := make([]sink.File, len(order))
	for i, mf := range order {
		if len(mf.ranges) > 1 {
			mf.file.Key = lake.MergedKey(mf.file.View, mf.date, mf.topic, mf.ranges)
		}
		out[i] = mf.file
	}
	return out, bytes
}

// dueGroup makes the group of self, flushing by age or at the end of a
// backlog, and of every other partition joinsDue takes along, which it
// signals.
func (c *Consumer) dueGroup(self *worker, reason flushReason) *flushGroup {
	g := newFlushGroup(c, reason)
	g.expect() // self, which joins when it seals
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for _, w := range c.workers {
		if w != self && joinsDue(now, c.opts.MaxAge, w.peer(now)) {
			g.signal(w)
		}
	}
	return g
}

// peersCatchingUp reports whether a partition other than self is working
// through a backlog it has not reached the end of.
func (c *Consumer) peersCatchingUp(self *worker) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.workers {
		if w != self && w.shared.catchingUp.Load() {
			return true
		}
	}
	return false
}
