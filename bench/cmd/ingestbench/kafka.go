package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/consumer"
	"fhirlake/synth"
)

// newAdmin is an admin client of the cluster conn (kafkaconn.Options)
// connects to.
func newAdmin(conn []kgo.Opt) (*kadm.Client, *kgo.Client, error) {
	cl, err := kgo.NewClient(conn...)
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(cl), cl, nil
}

func createTopics(ctx context.Context, adm *kadm.Client, partitions int32, topics ...string) error {
	resp, err := adm.CreateTopics(ctx, partitions, 1, nil, topics...)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil {
			return fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// generator returns a synthetic stream of at least n single-resource event
// notifications (no control, malformed or unroutable records) spread over
// tenants, with the generator's usual updates and deletes.
func generator(tenants []string, n int, seed int64) (*synth.Generator, error) {
	opts := func(patients int) synth.Options {
		return synth.Options{
			Tenants: tenants, Patients: patients, Seed: seed,
			UpdateRatio: 0.2, DeleteRatio: 0.05,
			Formats:                  []synth.Format{synth.FormatR4Backport, synth.FormatR5, synth.FormatR4BHistory},
			ResourcesPerNotification: 1,
		}
	}
	probe, err := synth.New(opts(100))
	if err != nil {
		return nil, err
	}
	patients := 100
	if t := probe.Total(); t < n {
		patients = int(float64(n)*100/float64(t)*1.02) + 1
	}
	for {
		g, err := synth.New(opts(patients))
		if err != nil {
			return nil, err
		}
		if g.Total() >= n {
			return g, nil
		}
		patients += patients/20 + 1
	}
}

func kafkaRecord(topic string, r synth.Record) *kgo.Record {
	rec := &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value}
	for _, h := range r.Headers {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	return rec
}

// produceAll writes the first n records of gen to topic as fast as the
// broker takes them, the way `fhirlake generate` does, and returns the
// value bytes written.
func produceAll(ctx context.Context, conn []kgo.Opt, topic string, gen *synth.Generator, n int) (int64, error) {
	cl, err := kgo.NewClient(append(slices.Clip(conn),
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(4<<20),
		kgo.MaxBufferedRecords(50_000),
	)...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var bytes int64
	var firstErr atomic.Pointer[error]
	for i := 0; i < n; i++ {
		r, ok := gen.Next()
		if !ok {
			return bytes, fmt.Errorf("generator ended after %d records", i)
		}
		bytes += int64(len(r.Value))
		cl.Produce(ctx, kafkaRecord(topic, r), func(_ *kgo.Record, err error) {
			if err != nil {
				firstErr.CompareAndSwap(nil, &err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return bytes, err
	}
	if p := firstErr.Load(); p != nil {
		return bytes, fmt.Errorf("produce: %w", *p)
	}
	return bytes, nil
}

// produced remembers, for every acknowledged record of a paced run, when
// it was produced and for which tenant, indexed by partition and offset.
type produced struct {
	mu      sync.Mutex
	tenants map[string]uint8
	names   []string
	parts   map[int32]*partRecords
	count   int
	bytes   int64
	errs    int
}

type partRecords struct {
	ts     []int64 // produce time, unix nanoseconds; 0 = unknown offset
	tenant []uint8
}

func newProduced(tenants []string) *produced {
	p := &produced{tenants: map[string]uint8{}, names: tenants, parts: map[int32]*partRecords{}}
	for i, t := range tenants {
		p.tenants[t] = uint8(i)
	}
	return p
}

func (p *produced) add(partition int32, offset int64, ts time.Time, tenant string, size int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := p.parts[partition]
	if pr == nil {
		pr = &partRecords{}
		p.parts[partition] = pr
	}
	for int64(len(pr.ts)) <= offset {
		pr.ts = append(pr.ts, 0)
		pr.tenant = append(pr.tenant, 0)
	}
	pr.ts[offset] = ts.UnixNano()
	pr.tenant[offset] = p.tenants[tenant]
	p.count++
	p.bytes += int64(size)
}

// producePaced writes gen's records at rate records per second for d,
// recording each record's produce time (also its Kafka timestamp).
func producePaced(ctx context.Context, conn []kgo.Opt, topic string, gen *synth.Generator, rate int, d time.Duration, into *produced) (time.Duration, error) {
	cl, err := kgo.NewClient(append(slices.Clip(conn),
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchMaxBytes(4<<20),
		kgo.MaxBufferedRecords(100_000),
	)...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var errMu sync.Mutex
	var firstErr error
	start := time.Now()
	sent := 0
	total := int(float64(rate) * d.Seconds())
	for sent < total {
		if err := ctx.Err(); err != nil {
			return time.Since(start), err
		}
		due := min(int(float64(rate)*time.Since(start).Seconds()), total)
		for ; sent < due; sent++ {
			r, ok := gen.Next()
			if !ok {
				return time.Since(start), errors.New("generator exhausted")
			}
			rec := kafkaRecord(topic, r)
			rec.Timestamp = time.Now()
			tenant, size := r.Tenant, len(r.Value)
			cl.Produce(ctx, rec, func(rec *kgo.Record, err error) {
				if err != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					into.mu.Lock()
					into.errs++
					into.mu.Unlock()
					return
				}
				into.add(rec.Partition, rec.Offset, rec.Timestamp, tenant, size)
			})
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	if err := cl.Flush(ctx); err != nil {
		return elapsed, err
	}
	errMu.Lock()
	defer errMu.Unlock()
	if firstErr != nil {
		return elapsed, fmt.Errorf("produce: %w", firstErr)
	}
	return elapsed, nil
}

// waitLag polls the group's lag every 100 ms and returns when it is zero
// on every partition of topic (the time it was first seen at zero).
func waitLag(ctx context.Context, adm *kadm.Client, group, topic string, timeout time.Duration, alive func() error) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	var last int64 = -1
	for time.Now().Before(deadline) {
		if alive != nil {
			if err := alive(); err != nil {
				return time.Time{}, err
			}
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		lag, err := consumer.Lag(lctx, adm, group, []string{topic})
		cancel()
		if err == nil {
			last = lag.Total
			if lag.Total == 0 && len(lag.Partitions) > 0 {
				return time.Now(), nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return time.Time{}, fmt.Errorf("group %s: lag still %d after %s", group, last, timeout)
}

// waitStable waits until group has members and is stable, so that a paced
// run starts producing only once the consumer is reading.
func waitStable(ctx context.Context, adm *kadm.Client, group string, timeout time.Duration, alive func() error) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if alive != nil {
			if err := alive(); err != nil {
				return err
			}
		}
		d, err := adm.DescribeGroups(ctx, group)
		if err == nil {
			if g, ok := d[group]; ok && g.Err == nil && g.State == "Stable" && len(g.Members) > 0 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("group %s did not become stable within %s", group, timeout)
}
