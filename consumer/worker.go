package consumer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

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

// worker owns one partition's buffer. Only its goroutine touches the
// buffer; the consumer talks to it through in and stop, and waits on done.
type worker struct {
	c         *Consumer
	topic     string
	partition int32
	in        chan []*kgo.Record
	stop      chan stopRequest
	flushNow  chan struct{} // the memory budget is exhausted: flush what is held
	done      chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc

	buf       *Buffer
	have      bool // records are pending commit
	first     int64
	last      int64
	lastEpoch int32
	firstTime time.Time // Kafka timestamp of the first record: the date partition
	started   time.Time // when the oldest pending record arrived
	bytes     int64     // record bytes held, counted in the consumer budget

	dlq dlqTracker
}

func newWorker(c *Consumer, topic string, partition int32) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{
		c: c, topic: topic, partition: partition,
		in:       make(chan []*kgo.Record, 4),
		stop:     make(chan stopRequest, 1),
		flushNow: make(chan struct{}, 1),
		done:     make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
	}
	w.buf = newBuffer(c.mem, c.viewsByType, w.viewError)
	return w
}

func (w *worker) run() {
	defer close(w.done)
	defer w.cancel()
	defer w.release()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case recs := <-w.in:
			wasEmpty := !w.have
			for _, r := range recs {
				w.process(r)
			}
			if reason := w.full(); reason != "" {
				w.flush(reason)
				timer.Stop()
			} else if wasEmpty && w.have {
				timer.Reset(w.c.opts.MaxAge)
			}
		case <-timer.C:
			if w.have {
				w.flush("age")
			}
		case <-w.flushNow:
			if w.have {
				w.flush("memory")
				timer.Stop()
			}
		case req := <-w.stop:
			if req.mode == stopDrop {
				return
			}
			// Records dispatched before the rebalance are still queued.
			for {
				select {
				case recs := <-w.in:
					for _, r := range recs {
						w.process(r)
					}
					continue
				default:
				}
				break
			}
			if w.have {
				w.flush(req.reason)
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

// process decodes one record into the buffer, or dead-letters it.
func (w *worker) process(r *kgo.Record) {
	c := w.c
	c.m.records.WithLabelValues(r.Topic).Inc()
	c.m.recordBytes.WithLabelValues(r.Topic).Add(float64(len(r.Value)))
	if !w.have {
		w.have = true
		w.first = r.Offset
		w.firstTime = r.Timestamp
		w.started = time.Now()
	}
	w.last = r.Offset
	w.lastEpoch = r.LeaderEpoch
	w.bytes += int64(len(r.Value))

	n, err := DecodeRecord(r.Value, r.Headers)
	if err != nil {
		class, reason := ClassInvalid, err.Error()
		if de, ok := IsDecodeError(err); ok {
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
			w.deadLetter(r, ClassIDOnly, "id-only payload and no FHIR server is configured for the tenant", tenant)
			return
		}
		if err := c.fetcher.Resolve(w.ctx, tenant, n); err != nil {
			var fe *FetchError
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
		c.m.controls.WithLabelValues(t).Inc()
		c.log.Debug("control message", "tenant", tenant, "type", n.Type, "status", n.Status, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset)
		return
	}
	ingest := time.Now()
	at := Coordinates{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
	for i := range n.Events {
		ev := &n.Events[i]
		w.buf.Add(tenant, ev, at, ingest)
		c.m.events.WithLabelValues(string(n.Format), ev.ResourceType, string(ev.Operation)).Inc()
	}
}

// viewError counts and logs a resource a view could not evaluate. The raw
// row is stored whatever happens, so nothing is lost: the batch layer can
// re-derive the row.
func (w *worker) viewError(tenant, view string, ev *Event, at Coordinates, err error) {
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

// flush makes the buffer durable and commits its offsets, retrying until it
// succeeds or the worker is cancelled (then nothing is committed and the
// records replay from the last commit).
func (w *worker) flush(reason string) {
	c := w.c
	start := time.Now()
	files, newest, err := w.files()
	if err != nil {
		// Building the batch cannot fail on valid state; drop the partition
		// so the records replay rather than commit past them.
		c.log.Error("build flush", "topic", w.topic, "partition", w.partition, "err", err)
		select {
		case c.fatal <- err:
		default:
		}
		w.cancel()
		return
	}
	defer func() {
		for _, f := range files {
			f.Record.Release()
		}
	}()
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = 10 * time.Second
	for attempt := 1; ; attempt++ {
		err := w.tryFlush(files)
		if err == nil {
			break
		}
		if w.ctx.Err() != nil {
			c.log.Warn("flush abandoned; records will replay", "topic", w.topic, "partition", w.partition, "first", w.first, "last", w.last, "err", err)
			return
		}
		c.m.flushErrors.Inc()
		wait := bo.NextBackOff()
		lvl := "flush failed; retrying"
		if errors.Is(err, sink.ErrAccessDenied) {
			lvl = "flush refused by the tenant store (access denied); not committing, retrying"
		}
		c.log.Error(lvl, "topic", w.topic, "partition", w.partition, "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-w.ctx.Done():
			c.log.Warn("flush abandoned; records will replay", "topic", w.topic, "partition", w.partition, "first", w.first, "last", w.last)
			return
		}
	}
	c.m.flushSeconds.Observe(time.Since(start).Seconds())
	c.m.flushes.WithLabelValues(reason).Inc()
	commitStart := time.Now()
	offsets := map[string]map[int32]kgo.EpochOffset{w.topic: {w.partition: {Epoch: w.lastEpoch, Offset: w.last + 1}}}
	if err := commit(w.ctx, c.cl, offsets); err != nil {
		// The partition may have moved; its new owner replays the range and
		// overwrites the same files.
		c.log.Warn("commit failed; range will replay", "topic", w.topic, "partition", w.partition, "offset", w.last+1, "err", err)
	} else {
		c.m.commitSeconds.Observe(time.Since(commitStart).Seconds())
		for tenant, ts := range newest {
			if !ts.IsZero() {
				c.m.freshness.WithLabelValues(tenant).Set(float64(ts.UnixMilli()) / 1000)
				c.m.fresh.observe(tenant, ts)
			}
		}
		c.log.Debug("committed", "topic", w.topic, "partition", w.partition, "offset", w.last+1, "files", len(files), "reason", reason)
	}
	w.reset()
}

func (w *worker) tryFlush(files []sink.File) error {
	if len(files) > 0 {
		if _, err := w.c.writer.Write(w.ctx, files); err != nil {
			return err
		}
	}
	if err := w.dlq.wait(w.ctx); err != nil {
		w.dlq.retry(w.ctx, w.c.cl)
		return err
	}
	return nil
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

// files builds one file per tenant from the buffer. The builders are
// emptied; the returned records hold the rows until released.
func (w *worker) files() ([]sink.File, map[string]time.Time, error) {
	date := w.firstTime
	if date.IsZero() {
		date = time.Now()
	}
	newest := maps.Clone(w.buf.Newest())
	files, err := w.buf.Files(func(view string) string {
		return sink.Key(view, date, w.topic, w.partition, w.first, w.last)
	})
	return files, newest, err
}

func (w *worker) reset() {
	w.c.buffered.Add(-w.bytes)
	w.c.m.buffered.Set(float64(w.c.buffered.Load()))
	w.have, w.bytes = false, 0
	w.dlq.reset()
}

// release frees the builders and returns the budget when the worker exits.
func (w *worker) release() {
	w.buf.Release()
	w.c.buffered.Add(-w.bytes)
	w.c.m.buffered.Set(float64(w.c.buffered.Load()))
	w.bytes = 0
}
