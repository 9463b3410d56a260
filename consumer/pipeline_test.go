package consumer

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/lake"
	"fhirlake/sink"
	"fhirlake/synth"
)

// TestBacklogCaughtUp: a backlog produced two hours ago, read in small
// fetches with a one-hour age limit. Its last buffer is held for the
// backlog hold of 24 minutes unless the worker flushes it on catching
// up; the records are committed and complete well before that.
func TestBacklogCaughtUp(t *testing.T) {
	for _, tc := range []struct {
		name        string
		age, maxAge time.Duration
	}{
		// Held for the backlog hold of 24 minutes.
		{"held", 2 * time.Hour, time.Hour},
		// Older than max_age/2 (stale), but not held: due in 294 s less
		// the partition's phase (under 45 s for the four partitions),
		// later than the backlog hold of 240 s.
		{"stale", 306 * time.Second, 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := synth.DefaultOptions()
			opts.Patients = 20
			opts.Tenants = []string{"acme", "globex"}
			h := newHarness(t, opts)
			h.producedAt = time.Now().Add(-tc.age)
			total := h.produce(-1)
			reg := prometheus.NewRegistry()
			c := h.consumerWith(reg, opts.Tenants, func(o *Options) {
				o.MaxRows = 1 << 20
				o.MaxAge = tc.maxAge
				o.ClientOpts = append(o.ClientOpts, kgo.FetchMaxPartitionBytes(32<<10), kgo.FetchMaxBytes(32<<10))
			})
			start := time.Now()
			h.runUntilCommitted(c, int64(total))
			took := time.Since(start)
			h.verify()
			reasons := map[string]float64{}
			for _, m := range series(t, reg, "fhirlake_consumer_flushes_total") {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" {
						reasons[l.GetValue()] += m.GetCounter().GetValue()
					}
				}
			}
			if reasons["caught-up"] == 0 || reasons["age"] != 0 {
				t.Errorf("flushes by reason %v: want them on catching up, none by age (committed after %v)", reasons, took)
			}
		})
	}
}

// gatedStore holds every Put until the gate opens, and remembers the
// highest offset made durable per partition (from the raw dataset's keys).
type gatedStore struct {
	sink.Store
	gate chan struct{}
	mu   sync.Mutex
	puts int
	last map[int32]int64
}

func (g *gatedStore) Put(ctx context.Context, key, path string) error {
	g.mu.Lock()
	g.puts++
	g.mu.Unlock()
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := g.Store.Put(ctx, key, path); err != nil {
		return err
	}
	if strings.HasPrefix(key, "speed/"+lake.RawDataset+"/") {
		name := key[strings.LastIndex(key, "/")+1:]
		name = strings.TrimPrefix(strings.TrimSuffix(name, ".parquet"), testTopic+"-")
		var p int32
		var first, last int64
		if _, err := fmt.Sscanf(name, "%d-%d-%d", &p, &first, &last); err == nil {
			g.mu.Lock()
			g.last[p] = max(g.last[p], last)
			g.mu.Unlock()
		}
	}
	return nil
}

// TestFlushPipeline: while a partition's flush is stuck in the store, its
// worker goes on decoding the next records and the stuck batch's records
// are released once encoded; nothing is committed before its files are
// durable, and commits follow the files in order.
func TestFlushPipeline(t *testing.T) {
	opts := synth.DefaultOptions()
	opts.Patients = 30
	opts.Tenants = []string{"acme"}
	h := newHarness(t, opts)
	gs := &gatedStore{Store: h.stores["acme"], gate: make(chan struct{}), last: map[int32]int64{}}
	h.stores["acme"] = gs
	total := h.produce(-1)
	reg := prometheus.NewRegistry()
	c := h.consumerWith(reg, opts.Tenants, func(o *Options) {
		o.MaxRows = 40
		o.MaxAge = time.Hour
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	committed := func() map[int32]int64 {
		out := map[int32]int64{}
		offs, err := adm.FetchOffsets(context.Background(), "fhirlake")
		if err != nil {
			return out
		}
		offs.Each(func(o kadm.OffsetResponse) { out[o.Partition] = o.At })
		return out
	}

	// Every partition has sealed a first batch and is stuck in its upload;
	// the workers keep decoding beyond the sealed batches.
	deadline := time.Now().Add(30 * time.Second)
	for {
		consumed := counterSum(t, reg, "fhirlake_consumer_records_total")
		gs.mu.Lock()
		puts := gs.puts
		gs.mu.Unlock()
		if puts > 0 && consumed > 4*40+40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with uploads stuck the workers decoded only %v records (%d puts waiting)", consumed, puts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := committed(); len(got) != 0 {
		t.Fatalf("offsets committed while no file was durable: %v", got)
	}
	// Batches stuck in their uploads are encoded already: their records'
	// memory is back in the budget, held by the local files instead.
	for c.sealed.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d record bytes still held by batches waiting for their uploads", c.sealed.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Let uploads through and watch commits never run ahead of the files.
	stopWatch := make(chan struct{})
	watchErr := make(chan error, 1)
	go func() {
		defer close(watchErr)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(5 * time.Millisecond):
			}
			got := committed()
			gs.mu.Lock()
			for p, at := range got {
				if at > 0 && at > gs.last[p]+1 {
					watchErr <- fmt.Errorf("partition %d committed at %d but files are durable only up to offset %d", p, at, gs.last[p])
					gs.mu.Unlock()
					return
				}
			}
			gs.mu.Unlock()
		}
	}()
	close(gs.gate)
	h.waitCommitted(int64(total))
	close(stopWatch)
	if err := <-watchErr; err != nil {
		t.Error(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.verify()
	// Every commit reports how long its oldest record waited; the first
	// batches waited at least as long as the uploads were held.
	n, sum := histogram(t, reg, "fhirlake_consumer_durable_latency_seconds")
	if n == 0 || sum <= 0 {
		t.Errorf("durable latency: %d observations summing to %v, want some", n, sum)
	}
}

func histogram(t *testing.T, reg *prometheus.Registry, name string) (uint64, float64) {
	t.Helper()
	ms := series(t, reg, name)
	if len(ms) == 0 {
		return 0, 0
	}
	h := ms[0].GetHistogram()
	return h.GetSampleCount(), h.GetSampleSum()
}
