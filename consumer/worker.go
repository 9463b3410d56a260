package consumer

import (
	"context"
	"maps"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/lake"
	"fhirlake/rows"
)

// worker owns one assigned partition. Its goroutine (run) decodes the
// records the poll loop dispatches into the filling buffer and, after
// every event, asks the partition's flushPolicy whether to flush; when the
// policy says so, it seals the buffer into a batch and hands it to the
// partition's flusher goroutine, which makes the batch's files durable and
// commits its offsets, in order, while the worker fills the next buffer.
// At most one batch is being flushed and one filled per partition: a
// worker that seals while its flusher is still busy waits, its records
// queue up in in, and the poll loop pauses the partition
// (Consumer.dispatch).
//
// Goroutines: run is started by Consumer.assigned and returns on a stop
// request (Consumer.stopWorkers) or once the worker is cancelled while
// sealing; then it closes done. run starts the flusher and, on its way
// out, closes flushes and waits for the flusher to return.
type worker struct {
	c         *Consumer
	topic     string
	partition int32

	// ctx is cancelled once nothing more may be committed: the partition
	// was lost, a stop timed out, or a batch could not be built. A flush
	// in progress is then abandoned, and its records replay on the
	// partition's next owner. done is closed when run has returned.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	// The worker goroutine's inbox: records from the poll loop, a stop
	// from the rebalance callbacks or shutdown, and a flush group to join
	// (a memory event, or a peer flushing by age or at the end of a
	// backlog). in holds a few deliveries, so that the poll loop gets ahead
	// of a worker busy decoding; stop and flushNow hold one, so that their
	// senders never block (a partition signalled twice flushes once).
	in       chan delivery
	stop     chan stopRequest
	flushNow chan *flushGroup

	// Owned by the worker goroutine.
	policy  flushPolicy
	timer   *time.Timer // set to policy.untilNext after every event
	filling filling
	dec     decoding

	// The flusher goroutine takes sealed batches from flushes, one at a
	// time; flusherDone is closed when it has returned.
	flushes     chan *batch
	flusherDone chan struct{}

	// shared is what the partition publishes for other goroutines'
	// decisions about it.
	shared shared
}

// filling is the buffer being filled: its rows, the offsets they come from
// and the dead letters produced for them. Whether it holds any records is
// the policy's to say (flushPolicy.empty).
type filling struct {
	buf         *rows.Buffer
	first, last int64
	epoch       int32     // leader epoch of the last record, committed with last+1
	produced    time.Time // Kafka timestamp of the first record: the date partition and the age clock
	bytes       int64     // record bytes decoded into the buffer
	dlq         *dlqTracker
}

// shared is what a partition publishes for the decisions other goroutines
// make about it (peer): the poll loop choosing whom a memory event
// flushes, and other partitions' workers forming a flush group or asking
// whether a peer is still catching up. The worker goroutine writes it
// (publish), except flushingSince, which the flusher writes; anyone reads
// it.
type shared struct {
	filling       atomic.Int64 // filling.bytes
	due           atomic.Int64 // policy.due in Unix nanoseconds; 0 when the buffer is empty
	catchingUp    atomic.Bool  // policy.catchingUp()
	waiting       atomic.Bool  // policy.waiting()
	flushingSince atomic.Int64 // when the flusher took its current batch, Unix nanoseconds; 0 when idle
}

// delivery is one poll's records of the partition. caughtUp is true when
// they reach the partition's high watermark: nothing more is waiting in
// the broker.
type delivery struct {
	recs     []*kgo.Record
	caughtUp bool
}

type stopMode int

const (
	stopFlush stopMode = iota // flush and commit, then exit
	stopDrop                  // drop the buffer and exit without a commit
)

type stopRequest struct {
	mode   stopMode
	reason flushReason // of the last flush, with stopFlush
}

func newWorker(c *Consumer, topic string, partition int32) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{
		c: c, topic: topic, partition: partition,
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
		in:       make(chan delivery, 4),
		stop:     make(chan stopRequest, 1),
		flushNow: make(chan *flushGroup, 1),
		policy:   newFlushPolicy(&c.opts, partition),
		timer:    time.NewTimer(time.Hour),
		dec: decoding{
			records: c.m.records.WithLabelValues(topic),
			bytes:   c.m.recordBytes.WithLabelValues(topic),
			events:  map[eventLabels]prometheus.Counter{},
		},
		flushes:     make(chan *batch),
		flusherDone: make(chan struct{}),
	}
	w.timer.Stop()
	w.filling.buf = rows.NewPlanBuffer(c.mem, c.plans, w.viewError)
	w.filling.dlq = &dlqTracker{}
	return w
}

// run is the worker goroutine: one event at a time, each handled by one
// method, then the partition's state is published and the timer set for
// the policy's next decision.
func (w *worker) run() {
	defer close(w.done)
	defer w.cancel()
	go w.flusher()
	defer w.exit()
	for {
		var ok bool
		select {
		case d := <-w.in:
			ok = w.deliver(d)
		case <-w.timer.C:
			ok = w.flushFor(w.policy.tick(time.Now(), w.peersCatchingUp))
		case g := <-w.flushNow:
			ok = w.joinGroup(g)
		case req := <-w.stop:
			w.stopping(req)
			return
		}
		if !ok {
			return // cancelled while sealing: nothing more may be committed
		}
		w.publish()
		w.arm()
	}
}

// deliver decodes a delivery into the filling buffer and flushes it if the
// policy says so.
func (w *worker) deliver(d delivery) bool {
	w.take(d.recs)
	h := held{rows: w.filling.buf.Rows(), bytes: w.filling.bytes}
	return w.flushFor(w.policy.add(time.Now(), h, d.caughtUp, w.peersCatchingUp))
}

// flushFor carries out a decision of the policy: nothing when it gave no
// reason, otherwise seal the buffer, taking the partitions due by then
// along when the reason does (Consumer.dueGroup). It returns false when
// the worker was cancelled meanwhile.
func (w *worker) flushFor(r flushReason) bool {
	if r == "" {
		return true
	}
	var g *flushGroup
	if r.takesAlongDue() {
		g = w.c.dueGroup(w, r)
	}
	return w.seal(r, g)
}

// joinGroup flushes the buffer as a member of g, or leaves g when there is
// nothing to flush.
func (w *worker) joinGroup(g *flushGroup) bool {
	if w.policy.empty() {
		g.leave()
		return true
	}
	return w.seal(g.reason, g)
}

// stopping carries out a stop request: drop the buffer, or take the records
// still queued and flush them alone (the other partitions go on).
func (w *worker) stopping(req stopRequest) {
	if req.mode == stopDrop {
		return
	}
	// Records dispatched before the rebalance are still queued.
	for queued := true; queued; {
		select {
		case d := <-w.in:
			w.take(d.recs)
		default:
			queued = false
		}
	}
	if !w.policy.empty() {
		w.seal(req.reason, nil)
	}
}

// exit runs as run returns: the flusher finishes what it was handed, the
// filling buffer is freed, and a group that signalled after the last look
// is left, so that it does not wait for this partition.
func (w *worker) exit() {
	close(w.flushes)
	<-w.flusherDone
	w.release()
	for {
		select {
		case g := <-w.flushNow:
			g.leave()
		default:
			return
		}
	}
}

// arm sets the timer for the policy's next decision, or stops it.
func (w *worker) arm() {
	if d, ok := w.policy.untilNext(time.Now()); ok {
		w.timer.Reset(d)
	} else {
		w.timer.Stop()
	}
}

// publish copies the filling buffer's and the policy's state to shared. It
// runs after every event, after a seal, and before the worker asks its
// peers, so that they never decide on this partition's past.
func (w *worker) publish() {
	var due int64
	if !w.policy.empty() {
		due = w.policy.due.UnixNano()
	}
	w.shared.filling.Store(w.filling.bytes)
	w.shared.due.Store(due)
	w.shared.catchingUp.Store(w.policy.catchingUp())
	w.shared.waiting.Store(w.policy.waiting())
}

// peer is the partition as other goroutines see it at now.
func (w *worker) peer(now time.Time) peer {
	p := peer{filling: w.shared.filling.Load(), waiting: w.shared.waiting.Load()}
	if due := w.shared.due.Load(); due != 0 {
		p.due = time.Unix(0, due)
	}
	since := w.shared.flushingSince.Load()
	p.stuck = since != 0 && now.UnixNano()-since > int64(JoinWait)
	return p
}

// peersCatchingUp reports whether another partition is still working
// through a backlog. It publishes this partition's state first: two
// partitions reaching the ends of their backlogs at once then cannot both
// see the other still catching up.
func (w *worker) peersCatchingUp() bool {
	w.publish()
	return w.c.peersCatchingUp(w)
}

// take decodes dispatched records into the filling buffer, opening it when
// they are its first; their bytes leave the budget, which counts the
// buffer's Arrow memory instead.
func (w *worker) take(recs []*kgo.Record) {
	if len(recs) == 0 {
		return
	}
	f := &w.filling
	opening := w.policy.empty()
	if opening {
		f.first, f.produced = recs[0].Offset, recs[0].Timestamp
	}
	for _, r := range recs {
		w.process(r)
	}
	last := recs[len(recs)-1]
	f.last, f.epoch = last.Offset, last.LeaderEpoch
	n := recordBytes(recs)
	f.bytes += n
	w.c.release(n)
	if opening {
		w.policy.open(time.Now(), f.produced)
	}
}

func recordBytes(recs []*kgo.Record) int64 {
	var n int64
	for _, r := range recs {
		n += int64(len(r.Value))
	}
	return n
}

// seal turns the filling buffer into a batch and hands it to the flusher,
// waiting while the flusher is busy with the previous one; with a group,
// the batch's files are written with the group's (flushGroup). It returns
// false when the worker was cancelled meanwhile (nothing more may be
// committed).
func (w *worker) seal(reason flushReason, g *flushGroup) bool {
	b, err := w.batch(reason)
	if g != nil {
		if err != nil {
			g.leave()
		} else {
			g.join(w, b) // or, too late for it, flush alone
		}
	}
	if err != nil {
		// Building the batch cannot fail on valid state; drop the partition
		// so the records replay rather than commit past them.
		w.c.log.Error("build flush", "topic", w.topic, "partition", w.partition, "err", err)
		select {
		case w.c.fatal <- err:
		default:
		}
		w.cancel()
		return false
	}
	select {
	case w.flushes <- b:
		return true
	case <-w.ctx.Done():
		w.finished(b)
		return false
	}
}

// batch seals the filling buffer: one file per tenant and dataset (the
// builders are emptied; the records hold the rows until released), the
// offset range, and the dead letters produced for it. The worker starts
// an empty buffer, and publishes it before waiting for the flusher.
func (w *worker) batch(reason flushReason) (*batch, error) {
	f := &w.filling
	date := f.produced
	if date.IsZero() {
		date = time.Now()
	}
	newest := maps.Clone(f.buf.Newest())
	files, err := f.buf.Files(func(view string) string {
		return lake.Key(view, date, w.topic, w.partition, f.first, f.last)
	})
	if err != nil {
		return nil, err
	}
	b := &batch{files: files, nfiles: len(files), newest: newest, first: f.first, last: f.last, epoch: f.epoch, bytes: f.bytes, date: date, produced: f.produced, reason: reason, dlq: f.dlq}
	w.c.sealed.Add(b.bytes)
	f.bytes, f.dlq = 0, &dlqTracker{}
	w.policy.flushed()
	w.publish()
	return b, nil
}

// release frees the filling buffer's builders when the worker exits, and
// returns the budget of records dispatched to it and never decoded.
func (w *worker) release() {
	w.filling.buf.Release()
	w.filling.bytes = 0
	for {
		select {
		case d := <-w.in:
			w.c.release(recordBytes(d.recs))
		default:
			return
		}
	}
}
