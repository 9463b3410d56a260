package consumer

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/flatten"
	"fhirlake/synth"
)

// benchRecords returns n synthetic records of three tenants, as one
// partition's fetches would hold them (no dead letters: they would need a
// broker).
func benchRecords(tb testing.TB, n int) []*kgo.Record {
	tb.Helper()
	opts := synth.DefaultOptions()
	opts.Patients = n/18/3 + 1
	opts.Tenants = []string{"acme", "globex", "initech"}
	opts.Malformed, opts.Unroutable, opts.Controls = 0, 0, 0
	gen, err := synth.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	recs := make([]*kgo.Record, 0, n)
	for i := 0; i < n; i++ {
		r, ok := gen.Next()
		if !ok {
			break
		}
		rec := &kgo.Record{Topic: testTopic, Key: r.Key, Value: r.Value, Offset: int64(i), Timestamp: now}
		for _, h := range r.Headers {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		recs = append(recs, rec)
	}
	return recs
}

// benchConsumer is a Consumer with what a worker needs to decode records
// and seal batches, and no Kafka client.
func benchConsumer(tb testing.TB) *Consumer {
	tb.Helper()
	views, err := flatten.DefaultViews()
	if err != nil {
		tb.Fatal(err)
	}
	opts := Options{Views: views, Routing: RouteOptions{Header: "fhir-tenant"}, Tenants: []string{"acme", "globex", "initech"}}
	opts.defaults()
	opts.MaxRows, opts.MaxBytes, opts.MaxAge = 1<<30, 1<<40, time.Hour
	return &Consumer{
		plans:  flatten.Plans(views),
		opts:   opts,
		router: NewRouter(opts.Routing, opts.Tenants),
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		m:      newMetrics(nil),
		mem:    newCountingAllocator(),
	}
}

// BenchmarkWorkerTake decodes deliveries of 100 records into a partition's
// filling buffer, as the worker does for each poll: the per-record hot
// path (decode, route, rows of the raw dataset and every default view,
// counters) and the per-delivery bookkeeping. The buffer is sealed and
// released, outside the timer, every 20,000 records.
func BenchmarkWorkerTake(b *testing.B) {
	const perBuffer, perDelivery = 20_000, 100
	recs := benchRecords(b, perBuffer)
	c := benchConsumer(b)
	w := newWorker(c, testTopic, 0)
	defer w.filling.buf.Release()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	next := 0
	for i := 0; i < b.N; i++ {
		if next+perDelivery > len(recs) {
			b.StopTimer()
			bt, err := w.batch("rows")
			if err != nil {
				b.Fatal(err)
			}
			w.finished(bt)
			next = 0
			b.StartTimer()
		}
		benchDeliver(w, delivery{recs: recs[next : next+perDelivery], caughtUp: true})
		next += perDelivery
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perDelivery), "ns/record")
	// CPU time per record, the figure that other work on the machine
	// disturbs least; it includes the seals outside the timer (one per
	// 20,000 records) and the garbage collector's own workers.
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*perDelivery), "cpu-ns/record")
	}
}

// benchDeliver is the worker's handling of one delivery, short of a flush:
// one turn of run's loop.
func benchDeliver(w *worker, d delivery) {
	w.deliver(d)
	w.publish()
	w.arm()
}
