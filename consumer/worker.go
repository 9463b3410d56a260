package consumer

import (
	"context"
	"maps"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/notification"
	"fhirlake/rows"
	"fhirlake/sink"
)

type stopMode int

const (
	stopFlush stopMode = iota // flush and commit, then exit
	stopDrop                  // drop the buffer and exit without a commit
)

type stopRequest struct {
	mode   stopMode
	reason string
}

// worker owns one partition. Its goroutine decodes records into the
// filling buffer; when a limit is reached it seals the buffer into a batch
// and hands it to the partition's flusher, which makes the files durable and
// commits their offsets, in order, while the worker goes on filling the next
// buffer. At most one batch is being flushed and one filled per partition:
// a worker that seals while its flusher is still busy waits, its records
// queue up, and the poll loop pauses the partition.
type worker struct {
	c         *Consumer
	topic     string
	partition int32
	in        chan delivery
	stop      chan stopRequest
	// headers is the decoder's view of the record being processed, reused.
	headers []notification.Header
	// flushNow says the memory budget is exhausted: flush what is held, as
	// a member of the group.
	flushNow chan *flushGroup
	done     chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	// phase shortens this partition's age limit a little, so that
	// partitions filled at the same rate do not all flush at the same moment.
	phase time.Duration

	flushes     chan *batch // to the flusher, which owns sealed batches
	flusherDone chan struct{}
	// flushingSince is when the flusher took its current batch (Unix
	// nanoseconds; 0 when idle).
	flushingSince atomic.Int64

	buf       *rows.Buffer
	have      bool // records are pending in the filling buffer
	first     int64
	last      int64
	lastEpoch int32
	firstTime time.Time // Kafka timestamp of the first record: the date partition
	// backlogged is true when the partition is working through a backlog:
	// the filling buffer's deadline was pushed to the minimum hold because
	// its first record was already old, or that record was older than half
	// of MaxAge when it arrived. Reaching the high watermark then ends the
	// backlog.
	backlogged bool
	// due is when the filling buffer must be flushed by age (Unix
	// nanoseconds; 0 when empty), for Consumer.dueGroup.
	due atomic.Int64
	// behind is true when a delivery since the last caught-up one stopped
	// short of the partition's high watermark.
	behind bool
	// backlogged and behind, for other partitions' goroutines
	// (Consumer.peerBehind).
	backlog, lagging atomic.Bool
	// waiting is set while the buffer waits, at the end of a backlog, for
	// the partitions still behind (Consumer.dueGroup takes it along).
	waiting atomic.Bool
	bytes   int64 // record bytes decoded into the filling buffer (flush.max_bytes)
	dlq     *dlqTracker
	// Counters of this partition's topic, and of events by label values,
	// looked up once rather than per record.
	mRecords, mBytes prometheus.Counter
	mEvents          map[eventLabels]prometheus.Counter

	// filling is bytes, readable by the poll loop choosing which buffers
	// to flush when the memory budget runs out.
	filling atomic.Int64
}

// delivery is one poll's records of the partition. caughtUp is true when
// they reach the partition's high watermark: nothing more is waiting in
// the broker.
type delivery struct {
	recs     []*kgo.Record
	caughtUp bool
}

func newWorker(c *Consumer, topic string, partition int32) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{
		c: c, topic: topic, partition: partition,
		in:          make(chan delivery, 4),
		stop:        make(chan stopRequest, 1),
		flushNow:    make(chan *flushGroup, 1),
		done:        make(chan struct{}),
		ctx:         ctx,
		cancel:      cancel,
		flushes:     make(chan *batch),
		flusherDone: make(chan struct{}),
		phase:       agePhase(c.opts.MaxAge, partition),
		dlq:         &dlqTracker{},
		mRecords:    c.m.records.WithLabelValues(topic),
		mBytes:      c.m.recordBytes.WithLabelValues(topic),
		mEvents:     map[eventLabels]prometheus.Counter{},
	}
	w.buf = rows.NewBuffer(c.mem, c.opts.Views, w.viewError)
	return w
}

// agePhase spreads partitions' age limits over the last fifth of MaxAge.
func agePhase(maxAge time.Duration, partition int32) time.Duration {
	const slots = 8
	return maxAge / 5 * time.Duration(int(uint32(partition)%slots)) / slots
}

// MinAgeFraction: a buffer whose first record was produced long ago (the
// consumer is catching up) is still held for this fraction of MaxAge, so
// that a backlog is written in files of a reasonable size.
const MinAgeFraction = 5

// deadline is when a buffer opened now by a record produced at produced
// must be flushed: MaxAge after the record was produced (less the
// partition's phase), so that the time to durability is bounded from
// production rather than from arrival, but never sooner than MaxAge/5 from
// now and never later than MaxAge from now (producer clocks may be wrong).
// held reports that the minimum hold applied: the record was already old.
func (w *worker) deadline(now, produced time.Time) (at time.Time, held bool) {
	maxAge := w.c.opts.MaxAge
	latest := now.Add(maxAge - w.phase)
	if produced.IsZero() {
		return latest, false
	}
	d := produced.Add(maxAge - w.phase)
	if d.After(latest) {
		return latest, false
	}
	if earliest := now.Add(maxAge / MinAgeFraction); d.Before(earliest) {
		return earliest, true
	}
	return d, false
}

// backlogDone reports whether the delivery just taken ends a backlog: it
// reaches the high watermark after earlier ones did not, and the filling
// buffer is only being held for the minimum hold because its records are
// already old. Holding it longer would only wait for records that are not
// there, so it is flushed at once. In steady state neither holds: fetches
// reach the high watermark and records are fresh.
func (w *worker) backlogDone(d delivery) bool {
	wasBehind := w.behind
	w.behind = !d.caughtUp
	w.lagging.Store(w.behind)
	return d.caughtUp && wasBehind && w.have && w.backlogged
}

func (w *worker) run() {
	defer close(w.done)
	defer w.cancel()
	go w.flusher()
	defer func() {
		close(w.flushes)
		<-w.flusherDone
		w.release()
		// A group signalled after the last look must not wait for us.
		for {
			select {
			case g := <-w.flushNow:
				g.leave()
				continue
			default:
			}
			break
		}
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	// recheck looks again, while the buffer is waiting, whether the
	// partitions it waits for are still behind.
	recheck := time.NewTimer(time.Hour)
	recheck.Stop()
	const recheckEvery = 50 * time.Millisecond
	for {
		select {
		case d := <-w.in:
			wasEmpty := !w.have
			w.take(d.recs)
			if wasEmpty && w.have {
				now := time.Now()
				at, held := w.deadline(now, w.firstTime)
				stale := !w.firstTime.IsZero() && now.Sub(w.firstTime) > w.c.opts.MaxAge/2
				w.backlogged = held || stale
				w.backlog.Store(w.backlogged)
				w.due.Store(at.UnixNano())
				timer.Reset(at.Sub(now))
			}
			caughtUp := w.backlogDone(d)
			reason := w.full()
			if reason == "" && caughtUp {
				if w.c.peerBehind(w) {
					// Others are still working through the backlog: the last
					// of them to reach its end takes this buffer along.
					w.waiting.Store(true)
					recheck.Reset(recheckEvery)
				} else {
					reason = "caught-up"
				}
			}
			if reason != "" {
				timer.Stop()
				recheck.Stop()
				var g *flushGroup
				if reason == "caught-up" {
					g = w.c.dueGroup(w, reason)
				}
				if !w.seal(reason, g) {
					return
				}
			}
		case <-timer.C:
			recheck.Stop()
			if w.have && !w.seal("age", w.c.dueGroup(w, "age")) {
				return
			}
		case <-recheck.C:
			switch {
			case !w.have || !w.waiting.Load():
			case w.c.peerBehind(w):
				recheck.Reset(recheckEvery)
			default:
				timer.Stop()
				if !w.seal("caught-up", w.c.dueGroup(w, "caught-up")) {
					return
				}
			}
		case g := <-w.flushNow:
			if !w.have {
				g.leave()
				continue
			}
			timer.Stop()
			recheck.Stop()
			if !w.seal(g.reason, g) {
				return
			}
		case req := <-w.stop:
			if req.mode == stopDrop {
				return
			}
			// Records dispatched before the rebalance are still queued.
			for {
				select {
				case d := <-w.in:
					w.take(d.recs)
					continue
				default:
				}
				break
			}
			if w.have {
				w.seal(req.reason, nil)
			}
			return
		}
	}
}

func (w *worker) full() string {
	switch {
	case w.buf.Rows() >= w.c.opts.MaxRows:
		return "rows"
	case w.bytes >= w.c.opts.MaxBytes:
		return "bytes"
	}
	return ""
}

// stuck reports whether the partition's flusher has been on one batch for
// longer than a group waits for its members: its store is refusing or
// down, and a group should not wait for it.
func (w *worker) stuck(now time.Time) bool {
	since := w.flushingSince.Load()
	return since != 0 && now.UnixNano()-since > int64(JoinWait)
}

// seal turns the filling buffer into a batch and hands it to the flusher,
// waiting while the flusher is busy with the previous one; with a group,
// the batch's files are written with the group's (flushGroup). It returns
// false when the worker was cancelled meanwhile (nothing more may be
// committed).
func (w *worker) seal(reason string, g *flushGroup) bool {
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
// an empty buffer.
func (w *worker) batch(reason string) (*batch, error) {
	date := w.firstTime
	if date.IsZero() {
		date = time.Now()
	}
	newest := maps.Clone(w.buf.Newest())
	files, err := w.buf.Files(func(view string) string {
		return sink.Key(view, date, w.topic, w.partition, w.first, w.last)
	})
	if err != nil {
		return nil, err
	}
	b := &batch{files: files, nfiles: len(files), newest: newest, first: w.first, last: w.last, epoch: w.lastEpoch, bytes: w.bytes, date: date, produced: w.firstTime, reason: reason, dlq: w.dlq}
	w.c.sealed.Add(b.bytes)
	w.have, w.backlogged, w.bytes = false, false, 0
	w.backlog.Store(false)
	w.waiting.Store(false)
	w.due.Store(0)
	w.filling.Store(0)
	w.dlq = &dlqTracker{}
	return b, nil
}

// release frees the filling buffer's builders when the worker exits, and
// returns the budget of records dispatched to it and never decoded.
func (w *worker) release() {
	w.buf.Release()
	w.bytes = 0
	for {
		select {
		case d := <-w.in:
			w.c.release(recordBytes(d.recs))
		default:
			return
		}
	}
}

func recordBytes(recs []*kgo.Record) int64 {
	var n int64
	for _, r := range recs {
		n += int64(len(r.Value))
	}
	return n
}

// take decodes dispatched records into the filling buffer; their bytes
// leave the budget, which counts the buffer's Arrow memory instead.
func (w *worker) take(recs []*kgo.Record) {
	for _, r := range recs {
		w.process(r)
	}
	w.c.release(recordBytes(recs))
	w.filling.Store(w.bytes)
}
