package consumer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

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
// credentials. The filling buffer's tracker follows the produce, so that
// the buffer's offsets are committed only once it is acknowledged.
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
	w.filling.dlq.produce(w.ctx, c.cl, dl)
}

// dlqTracker follows the dead letters produced for one batch, so its
// flush can wait until every one of them is acknowledged, and produce again
// those that failed.
type dlqTracker struct {
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
	failed []*kgo.Record
	n      int
}

func (d *dlqTracker) produce(ctx context.Context, cl *kgo.Client, r *kgo.Record) {
	d.n++
	d.send(ctx, cl, r)
}

func (d *dlqTracker) send(ctx context.Context, cl *kgo.Client, r *kgo.Record) {
	d.wg.Add(1)
	cl.Produce(ctx, r, func(r *kgo.Record, err error) {
		if err != nil {
			d.mu.Lock()
			d.err = errors.Join(d.err, err)
			d.failed = append(d.failed, r)
			d.mu.Unlock()
		}
		d.wg.Done()
	})
}

// wait returns once every dead letter is acknowledged, with the failures if
// any; the flush then fails and retry produces them again. Its helper
// goroutine returns once every produce has called back (the client calls
// back every record, also when it closes), whether or not wait is still
// there.
func (d *dlqTracker) wait(ctx context.Context) error {
	if d.n == 0 {
		return nil
	}
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return fmt.Errorf("produce %d dead letters: %w", len(d.failed), d.err)
	}
	return nil
}

// retry produces the failed dead letters again.
func (d *dlqTracker) retry(ctx context.Context, cl *kgo.Client) {
	d.mu.Lock()
	failed := d.failed
	d.failed, d.err = nil, nil
	d.mu.Unlock()
	for _, r := range failed {
		d.send(ctx, cl, r)
	}
}
