package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"fhirlake/sink"
)

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
	reason      flushReason
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

// flusher is a partition's flusher goroutine: it makes sealed batches
// durable and commits them, one at a time and in offset order. Once the
// worker is cancelled it commits nothing more and only releases what is
// still handed to it. It returns when run closes flushes.
func (w *worker) flusher() {
	defer close(w.flusherDone)
	for b := range w.flushes {
		w.shared.flushingSince.Store(time.Now().UnixNano())
		if w.ctx.Err() == nil {
			w.flush(b)
		}
		w.finished(b)
		w.shared.flushingSince.Store(0)
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
	c.m.flushes.WithLabelValues(string(b.reason)).Inc()
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

// tryFlush is one attempt: wait for the group writing the batch's files,
// or encode and upload them; then wait for the batch's dead letters.
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

// flushBackoff is the retry schedule of a failed flush: quick at first, for
// a blip, and no slower than MaxInterval, so that a store coming back is
// noticed soon.
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
	} else if errors.Is(err, sink.ErrUntrusted) {
		msg = what + " failed: a tenant store's TLS certificate is not trusted (store.ca_file); not committing, retrying"
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
