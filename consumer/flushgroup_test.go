package consumer

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/lake"
	"fhirlake/sink"
	"fhirlake/synth"
)

// keyStore remembers the keys put.
type keyStore struct {
	sink.Store
	mu   sync.Mutex
	keys []string
}

func (k *keyStore) Put(ctx context.Context, key, path string) error {
	if err := k.Store.Put(ctx, key, path); err != nil {
		return err
	}
	k.mu.Lock()
	k.keys = append(k.keys, key)
	k.mu.Unlock()
	return nil
}

// TestConsumerGroupFlush: the partitions sealed together, by a memory
// event or by age in step, write one file per tenant and dataset between
// them, named after every partition's range; every row is written exactly
// once and every offset is committed.
func TestConsumerGroupFlush(t *testing.T) {
	for _, tc := range []struct {
		name string
		tune func(*Options)
	}{
		{"memory", func(o *Options) {
			o.MaxBufferedBytes = 4 << 20
			o.MaxAge = 2 * time.Second // memory drives the flushes until the last ones
		}},
		{"age", func(o *Options) {
			o.MaxBufferedBytes = 256 << 20
			o.MaxAge = 500 * time.Millisecond
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { testGroupFlush(t, tc.tune) })
	}
}

func testGroupFlush(t *testing.T, tune func(*Options)) {
	opts := synth.DefaultOptions()
	opts.Patients = 150
	opts.Tenants = []string{"acme", "globex"}
	h := newHarness(t, opts)
	stores := map[string]*keyStore{}
	for _, tn := range opts.Tenants {
		stores[tn] = &keyStore{Store: h.stores[tn]}
		h.stores[tn] = stores[tn]
	}
	h.producedAt = time.Now() // small batches
	total := h.produce(-1)
	c := h.consumerWith(prometheus.NewRegistry(), opts.Tenants, func(o *Options) {
		// Every poll takes a little of each partition, so that they fill
		// together, as they do from a real broker.
		o.ClientOpts = append(o.ClientOpts, kgo.FetchMaxPartitionBytes(32<<10))
		o.MaxBytes = 64 << 20
		o.MaxRows = 1_000_000
		tune(o)
	})
	h.runUntilCommitted(c, int64(total))
	h.verify()

	merged := map[bool]int{} // by raw
	for _, ks := range stores {
		for _, k := range ks.keys {
			if name := strings.TrimSuffix(filepath.Base(k), ".parquet"); strings.Contains(name, "_") {
				merged[strings.HasPrefix(k, "speed/"+lake.RawDataset+"/")]++
			}
		}
	}
	if merged[true] == 0 || merged[false] == 0 {
		t.Errorf("files shared by the partitions flushed together: %d raw, %d of views; want some of each", merged[true], merged[false])
	}

	// Every row once, with no replayed copies to drop: each record's
	// offset in the raw log, and each resource version's rows in a view.
	db := openDuckDB(t)
	raw := 0
	for _, tn := range opts.Tenants {
		glob := filepath.Join(h.roots[tn], "speed", lake.RawDataset, "*", "*.parquet")
		var rows, distinct int
		if err := db.QueryRow(fmt.Sprintf(`SELECT count(*), count(DISTINCT ("partition", "offset")) FROM read_parquet('%s')`, glob)).Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		if rows == 0 || rows != distinct {
			t.Errorf("tenant %s: %d raw rows, %d distinct offsets", tn, rows, distinct)
		}
		raw += rows
		glob = filepath.Join(h.roots[tn], "speed", "observation", "*", "*.parquet")
		if err := db.QueryRow(fmt.Sprintf(`SELECT count(*), count(DISTINCT (_resource_id, _version_id, _row)) FROM read_parquet('%s')`, glob)).Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		if rows == 0 || rows != distinct {
			t.Errorf("tenant %s: %d observation rows, %d distinct", tn, rows, distinct)
		}
	}
	t.Logf("files shared by several partitions: %d raw, %d of views; %d raw rows for %d records", merged[true], merged[false], raw, total)
}

// groupWorker returns a worker of c for partition p (not running) whose
// sealed batch holds n records of gen.
func groupWorker(t *testing.T, c *Consumer, gen *synth.Generator, p int32, n int) (*worker, *batch) {
	t.Helper()
	w := newWorker(c, testTopic, p)
	recs := make([]*kgo.Record, 0, n)
	for i := 0; i < n; i++ {
		r, ok := gen.Next()
		if !ok {
			t.Fatal("generator ran out")
		}
		rec := &kgo.Record{Topic: testTopic, Partition: p, Offset: int64(i), Value: r.Value, Timestamp: time.Now()}
		for _, hd := range r.Headers {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: hd.Key, Value: hd.Value})
		}
		recs = append(recs, rec)
	}
	c.buffered.Add(recordBytes(recs)) // as the poll loop does
	w.take(recs)
	b, err := w.batch(reasonMemory)
	if err != nil {
		t.Fatal(err)
	}
	return w, b
}

// TestFlushGroupMembers: a group goes on without a member that never
// joins and without one whose partition is lost after joining, and gives
// up, releasing every record, only once no member waits for it.
func TestFlushGroupMembers(t *testing.T) {
	opts := synth.DefaultOptions()
	opts.Patients = 20
	opts.Tenants = []string{"acme"}
	opts.Malformed, opts.Unroutable, opts.Controls = 0, 0, 0
	h := newHarness(t, opts)
	store := &blockingStore{Store: h.stores["acme"], release: make(chan struct{})}
	h.stores["acme"] = store
	c := h.consumerWith(prometheus.NewRegistry(), opts.Tenants, nil)

	// One member joins, one leaves, one joins and is lost: the group
	// writes the joined members' files once the store is back.
	g := newFlushGroup(c, "memory")
	for range 3 {
		g.expect()
	}
	w0, b0 := groupWorker(t, c, h.gen, 0, 50)
	w2, b2 := groupWorker(t, c, h.gen, 2, 50)
	if !g.join(w0, b0) {
		t.Fatal("join refused before the group started")
	}
	g.leave()
	g.join(w2, b2)
	w2.cancel()
	if err := b2.member.wait(w2.ctx); err == nil {
		t.Error("a lost member's wait returned without error")
	}
	close(store.release)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b0.member.wait(ctx); err != nil {
		t.Fatalf("group flush: %v", err)
	}
	<-g.done
	if s := c.sealed.Load(); s != 0 {
		t.Errorf("sealed bytes after the group's flush: %d, want 0", s)
	}
	w0.cancel()

	// Every member lost while the store is down: the group gives up and
	// releases the records.
	store.release = make(chan struct{})
	g = newFlushGroup(c, "memory")
	g.expect()
	g.expect()
	w1, b1 := groupWorker(t, c, h.gen, 1, 50)
	w3, b3 := groupWorker(t, c, h.gen, 3, 50)
	g.join(w1, b1)
	g.join(w3, b3)
	time.Sleep(50 * time.Millisecond) // the upload is blocked
	w1.cancel()
	w3.cancel()
	select {
	case <-g.done:
	case <-time.After(30 * time.Second):
		t.Fatal("group still running with every member gone")
	}
	if b1.member.err == nil || b3.member.err == nil {
		t.Error("members of an abandoned group report no error")
	}
	for _, w := range []*worker{w0, w1, w2, w3} {
		w.filling.buf.Release()
	}
	if s := c.sealed.Load(); s != 0 {
		t.Errorf("sealed bytes after the group gave up: %d, want 0", s)
	}
	if n := c.mem.InUse(); n != 0 {
		t.Errorf("%d bytes of Arrow memory still held", n)
	}
}

// TestFlushGroupIsolation: a member whose tenant's store refuses holds
// back only itself; a member that does not join within JoinWait is left
// out, and flushes alone.
func TestFlushGroupIsolation(t *testing.T) {
	opts := synth.DefaultOptions()
	opts.Patients = 20
	opts.Tenants = []string{"acme", "globex"}
	opts.Malformed, opts.Unroutable, opts.Controls = 0, 0, 0
	h := newHarness(t, opts)
	refusing := &blockingStore{Store: h.stores["globex"], release: make(chan struct{})}
	h.stores["globex"] = refusing
	c := h.consumerWith(prometheus.NewRegistry(), opts.Tenants, nil)
	gen := func(tenant string) *synth.Generator {
		o := opts
		o.Tenants = []string{tenant}
		g, err := synth.New(o)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}

	start := time.Now()
	g := newFlushGroup(c, "age")
	g.expect()
	g.expect()
	g.expect() // never joins
	wa, ba := groupWorker(t, c, gen("acme"), 0, 40)
	wg, bg := groupWorker(t, c, gen("globex"), 1, 40)
	defer wa.cancel()
	defer wg.cancel()
	g.join(wa, ba)
	g.join(wg, bg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ba.member.wait(ctx); err != nil {
		t.Fatalf("acme's member: %v", err)
	}
	if waited := time.Since(start); waited < JoinWait {
		t.Errorf("the group started after %v, before JoinWait (%v)", waited, JoinWait)
	}
	select {
	case <-bg.member.done:
		t.Fatal("globex's member finished while its store refuses")
	default:
	}
	if wx, bx := groupWorker(t, c, gen("acme"), 2, 10); g.join(wx, bx) {
		t.Error("a member joined a group that had started")
	} else {
		wx.cancel()
		wx.finished(bx) // as its flusher would, after flushing it alone
		wx.filling.buf.Release()
	}
	close(refusing.release)
	if err := bg.member.wait(ctx); err != nil {
		t.Fatalf("globex's member once its store is back: %v", err)
	}
	<-g.done
	for _, w := range []*worker{wa, wg} {
		w.filling.buf.Release()
	}
	if s := c.sealed.Load(); s != 0 {
		t.Errorf("sealed bytes: %d, want 0", s)
	}
}
