package consumer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"fhirlake/lake"
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

type eventLabels struct {
	format    notification.Format
	typ       string
	operation notification.Operation
}

func (w *worker) eventCounter(f notification.Format, typ string, op notification.Operation) prometheus.Counter {
	k := eventLabels{f, typ, op}
	m, ok := w.mEvents[k]
	if !ok {
		// typ points into a record (DecodeRecord): the map and the metric
		// keep a copy.
		k.typ = strings.Clone(typ)
		m = w.c.m.events.WithLabelValues(string(f), k.typ, string(op))
		w.mEvents[k] = m
	}
	return m
}

// batch is a sealed buffer: the files of one offset range of the partition
// and what must be done before and after its commit.
type batch struct {
	files       []sink.File
	nfiles      int
	enc         *sink.Encoded // the files, once encoded locally
	newest      map[string]time.Time
	first, last int64
	epoch       int32
	bytes       int64     // record bytes, counted in Consumer.sealed until released
	date        time.Time // the date partition of the batch's files
	produced    time.Time // Kafka timestamp of the first (oldest) record
	reason      string
	dlq         *dlqTracker
	// member, when set, is the batch's place in a flush group, which
	// writes its files with other partitions' and owns its records and
	// bytes.
	member *groupMember
}

func (b *batch) release() {
	for _, f := range b.files {
		f.Release()
	}
	b.files = nil
}

// finished releases the batch's records, its share of Consumer.sealed and
// its local files.
func (w *worker) finished(b *batch) {
	b.release()
	w.c.releaseSealed(b.bytes)
	b.bytes = 0
	b.enc.Remove()
	b.enc = nil
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

// process decodes one record into the buffer, or dead-letters it.
func (w *worker) process(r *kgo.Record) {
	c := w.c
	w.mRecords.Inc()
	w.mBytes.Add(float64(len(r.Value)))
	if !w.have {
		w.have = true
		w.first = r.Offset
		w.firstTime = r.Timestamp
	}
	w.last = r.Offset
	w.lastEpoch = r.LeaderEpoch
	w.bytes += int64(len(r.Value))

	w.headers = decodeHeaders(w.headers[:0], r.Headers)
	n, err := notification.DecodeRecord(r.Value, w.headers)
	if err != nil {
		class, reason := notification.ClassInvalid, err.Error()
		if de, ok := notification.IsDecodeError(err); ok {
			class, reason = de.Class, de.Reason
		}
		w.deadLetter(r, class, reason, c.router.Claimed(r))
		return
	}
	tenant, err := c.router.Resolve(r, n)
	if err != nil {
		var re *RouteError
		errors.As(err, &re)
		w.deadLetter(r, re.Class, re.Reason, re.Claimed)
		return
	}
	if n.NeedsFetch() {
		if c.fetcher == nil {
			w.deadLetter(r, notification.ClassIDOnly, "id-only payload and no FHIR server is configured for the tenant", tenant)
			return
		}
		if err := c.fetcher.Resolve(w.ctx, tenant, n); err != nil {
			var fe *notification.FetchError
			if errors.As(err, &fe) {
				w.deadLetter(r, fe.Class, fe.Reason, tenant)
				return
			}
			// The worker is stopping: the record replays from the last commit.
			c.log.Warn("fetch interrupted; record will replay", "tenant", tenant, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			return
		}
	}
	if n.Control() {
		t := n.Type
		if n.Empty > 0 {
			t = "empty-event"
		}
		c.m.controls.WithLabelValues(strings.Clone(t)).Inc()
		c.log.Debug("control message", "tenant", tenant, "type", n.Type, "status", n.Status, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset)
		return
	}
	ingest := time.Now()
	at := rows.Coordinates{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
	for i := range n.Events {
		ev := &n.Events[i]
		w.buf.Add(tenant, ev, at, ingest)
		w.eventCounter(n.Format, ev.ResourceType, ev.Operation).Inc()
	}
}

// viewError counts and logs a resource a view could not evaluate. The raw
// row is stored whatever happens, so nothing is lost: the batch layer can
// re-derive the row.
func (w *worker) viewError(tenant, view string, ev *notification.Event, at rows.Coordinates, err error) {
	w.c.m.viewErrors.WithLabelValues(view).Inc()
	w.c.log.Warn("resource not flattened", "tenant", tenant, "view", view, "resource", ev.ResourceType+"/"+ev.ID, "topic", at.Topic, "partition", at.Partition, "offset", at.Offset, "err", err)
}

// Dead-letter header names.
const (
	HeaderErrorClass        = "fhirlake-error-class"
	HeaderErrorReason       = "fhirlake-error-reason"
	HeaderOriginalTopic     = "fhirlake-original-topic"
	HeaderOriginalPartition = "fhirlake-original-partition"
	HeaderOriginalOffset    = "fhirlake-original-offset"
	HeaderTenant            = "fhirlake-tenant"
)

// deadLetter produces the original key and value with the reason in
// headers. The original headers are not copied: channel headers may carry
// credentials.
func (w *worker) deadLetter(r *kgo.Record, class, reason, tenant string) {
	c := w.c
	c.m.deadLetters.WithLabelValues(class).Inc()
	c.log.Warn("dead letter", "class", class, "reason", reason, "tenant", tenant, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset)
	dl := &kgo.Record{
		Topic: c.opts.DeadLetterTopic,
		Key:   r.Key,
		Value: r.Value,
		Headers: []kgo.RecordHeader{
			{Key: HeaderErrorClass, Value: []byte(class)},
			{Key: HeaderErrorReason, Value: []byte(reason)},
			{Key: HeaderOriginalTopic, Value: []byte(r.Topic)},
			{Key: HeaderOriginalPartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
			{Key: HeaderOriginalOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
		},
	}
	if tenant != "" {
		dl.Headers = append(dl.Headers, kgo.RecordHeader{Key: HeaderTenant, Value: []byte(tenant)})
	}
	w.dlq.produce(w.ctx, c.cl, dl)
}

// flusher makes sealed batches durable and commits them, one at a time
// and in offset order. Once the worker is cancelled it commits nothing more
// and only releases what is still handed to it.
func (w *worker) flusher() {
	defer close(w.flusherDone)
	for b := range w.flushes {
		w.flushingSince.Store(time.Now().UnixNano())
		if w.ctx.Err() == nil {
			w.flush(b)
		}
		w.finished(b)
		w.flushingSince.Store(0)
	}
}

// flush makes a batch durable and commits its offsets, retrying until it
// succeeds or the worker is cancelled (then nothing is committed and the
// records replay from the last commit).
func (w *worker) flush(b *batch) {
	c := w.c
	start := time.Now()
	bo := flushBackoff()
	for attempt := 1; ; attempt++ {
		err := w.tryFlush(b)
		if err == nil {
			break
		}
		if w.ctx.Err() != nil {
			c.log.Warn("flush abandoned; records will replay", "topic", w.topic, "partition", w.partition, "first", b.first, "last", b.last, "err", err)
			return
		}
		wait := c.flushFailed(bo, err, "flush", "topic", w.topic, "partition", w.partition, "attempt", attempt)
		select {
		case <-time.After(wait):
		case <-w.ctx.Done():
			c.log.Warn("flush abandoned; records will replay", "topic", w.topic, "partition", w.partition, "first", b.first, "last", b.last)
			return
		}
	}
	c.m.flushSeconds.Observe(time.Since(start).Seconds())
	c.m.flushes.WithLabelValues(b.reason).Inc()
	commitStart := time.Now()
	offsets := map[string]map[int32]kgo.EpochOffset{w.topic: {w.partition: {Epoch: b.epoch, Offset: b.last + 1}}}
	if err := commit(w.ctx, c.cl, offsets); err != nil {
		// The partition may have moved; its new owner replays the range and
		// overwrites the same files.
		c.log.Warn("commit failed; range will replay", "topic", w.topic, "partition", w.partition, "offset", b.last+1, "err", err)
		return
	}
	c.m.commitSeconds.Observe(time.Since(commitStart).Seconds())
	if !b.produced.IsZero() {
		c.m.durableSeconds.Observe(max(time.Since(b.produced), 0).Seconds())
	}
	for tenant, ts := range b.newest {
		if !ts.IsZero() {
			c.m.freshness.WithLabelValues(tenant).Set(float64(ts.UnixMilli()) / 1000)
			c.m.fresh.observe(tenant, ts)
		}
	}
	c.log.Debug("committed", "topic", w.topic, "partition", w.partition, "offset", b.last+1, "files", b.nfiles, "reason", b.reason)
}

func (w *worker) tryFlush(b *batch) error {
	if b.member != nil {
		if err := b.member.wait(w.ctx); err != nil {
			return err
		}
	}
	if len(b.files) > 0 && b.enc == nil {
		enc, err := w.c.writer.Encode(w.ctx, b.files)
		if err != nil {
			return err
		}
		// The local files are all a retry needs: the records' memory goes
		// back to the budget now rather than once the uploads are done.
		b.enc = enc
		b.release()
		w.c.releaseSealed(b.bytes)
		b.bytes = 0
	}
	if b.enc != nil {
		if _, err := w.c.writer.Upload(w.ctx, b.enc); err != nil {
			return err
		}
	}
	if err := b.dlq.wait(w.ctx); err != nil {
		b.dlq.retry(w.ctx, w.c.cl)
		return err
	}
	return nil
}

// flushBackoff is the retry schedule of a failed flush.
func flushBackoff() *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = 10 * time.Second
	return bo
}

// flushFailed counts and logs a failed flush attempt of what ("flush" or
// "group flush") and returns how long to wait before the next one.
func (c *Consumer) flushFailed(bo *backoff.ExponentialBackOff, err error, what string, attrs ...any) time.Duration {
	c.m.flushErrors.Inc()
	wait := bo.NextBackOff()
	msg := what + " failed; retrying"
	if errors.Is(err, sink.ErrAccessDenied) {
		msg = what + " refused by a tenant store (access denied); not committing, retrying"
	}
	c.log.Error(msg, append(attrs, "retry_in", wait, "err", err)...)
	return wait
}

// commit commits offsets synchronously and reports request and
// per-partition errors.
func commit(ctx context.Context, cl *kgo.Client, offsets map[string]map[int32]kgo.EpochOffset) error {
	var out error
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			out = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
					out = errors.Join(out, fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, perr))
				}
			}
		}
	})
	return out
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
		return lake.Key(view, date, w.topic, w.partition, w.first, w.last)
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

// decodeHeaders appends a record's headers to dst as the decoder takes them;
// keys and values are not copied.
func decodeHeaders(dst []notification.Header, hs []kgo.RecordHeader) []notification.Header {
	for _, h := range hs {
		dst = append(dst, notification.Header{Key: h.Key, Value: h.Value})
	}
	return dst
}
