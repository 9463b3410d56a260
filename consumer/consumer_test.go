package consumer

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/flatten"
	"fhirlake/lake"
	"fhirlake/notification"
	"fhirlake/query"
	"fhirlake/sink"
	"fhirlake/synth"
)

const (
	testTopic = "fhir.notifications"
	testDLQ   = "fhir.deadletter"
)

type harness struct {
	t       *testing.T
	cluster *kfake.Cluster
	brokers []string
	stores  map[string]sink.Store
	roots   map[string]string
	gen     *synth.Generator
	// producedAt, when set, is the Kafka timestamp of every record
	// produced (a backlog produced long ago).
	producedAt time.Time
}

func newHarness(t *testing.T, opts synth.Options) *harness {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, testTopic, testDLQ))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	h := &harness{t: t, cluster: cluster, brokers: cluster.ListenAddrs(), stores: map[string]sink.Store{}, roots: map[string]string{}}
	for _, tn := range opts.Tenants {
		root := filepath.Join(t.TempDir(), tn)
		s, err := sink.NewLocal(root)
		if err != nil {
			t.Fatal(err)
		}
		h.stores[tn], h.roots[tn] = s, root
	}
	gen, err := synth.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.gen = gen
	return h
}

// produce sends n records of the stream (all when n < 0).
func (h *harness) produce(n int) int {
	popts := []kgo.Opt{kgo.SeedBrokers(h.brokers...), kgo.DefaultProduceTopic(testTopic)}
	if !h.producedAt.IsZero() {
		// Small batches, so that a backlog is fetched in several pieces.
		popts = append(popts, kgo.ProducerBatchMaxBytes(16<<10))
	}
	cl, err := kgo.NewClient(popts...)
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	sent := 0
	for n < 0 || sent < n {
		r, ok := h.gen.Next()
		if !ok {
			break
		}
		rec := &kgo.Record{Key: r.Key, Value: r.Value, Timestamp: h.producedAt}
		for _, hd := range r.Headers {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: hd.Key, Value: hd.Value})
		}
		cl.Produce(context.Background(), rec, func(_ *kgo.Record, err error) {
			if err != nil {
				h.t.Errorf("produce: %v", err)
			}
		})
		sent++
	}
	if err := cl.Flush(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	return sent
}

func (h *harness) consumer(reg prometheus.Registerer, tenants []string) *Consumer {
	h.t.Helper()
	return h.consumerWith(reg, tenants, nil)
}

func (h *harness) consumerWith(reg prometheus.Registerer, tenants []string, tune func(*Options)) *Consumer {
	h.t.Helper()
	w, err := sink.NewWriter(h.stores, sink.WriterOptions{WorkDir: h.t.TempDir()}, reg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { w.Close() })
	views, err := flatten.DefaultViews()
	if err != nil {
		h.t.Fatal(err)
	}
	o := Options{
		Views:   views,
		Brokers: h.brokers, Topics: []string{testTopic}, Group: "fhirlake", DeadLetterTopic: testDLQ,
		Routing: RouteOptions{Header: "fhir-tenant"}, Tenants: tenants,
		MaxRows: 500, MaxAge: 100 * time.Millisecond, RevokeTimeout: 5 * time.Second, ShutdownTimeout: 5 * time.Second,
		ClientOpts: []kgo.Opt{kgo.SessionTimeout(6 * time.Second), kgo.RebalanceTimeout(6 * time.Second), kgo.HeartbeatInterval(200 * time.Millisecond)},
	}
	if tune != nil {
		tune(&o)
	}
	c, err := New(o, w, reg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// runUntilCommitted runs c until its group has committed total records,
// then stops it and fails the test if it did not stop cleanly.
func (h *harness) runUntilCommitted(c *Consumer, total int64) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	h.waitCommitted(total)
	cancel()
	if err := <-done; err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) waitCommitted(total int64) {
	h.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...))
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		lag, err := Lag(context.Background(), adm, "fhirlake", []string{testTopic})
		if err == nil && lag.Total == 0 {
			var end int64
			for _, p := range lag.Partitions {
				end += p.End
			}
			if end == total {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatal("consumer group did not catch up within 60s")
}

func openDuckDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// verify compares every tenant's latest state with the generator's
// expectation and checks that no file holds another tenant's rows.
func (h *harness) verify() {
	h.t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		h.t.Fatal(err)
	}
	defer db.Close()
	want := map[string]map[string]synth.Expected{}
	for _, e := range h.gen.Expected() {
		if want[e.Tenant] == nil {
			want[e.Tenant] = map[string]synth.Expected{}
		}
		want[e.Tenant][e.ResourceType+"/"+e.ID] = e
	}
	for tn, root := range h.roots {
		glob := filepath.Join(root, "speed", lake.RawDataset, "*", "*.parquet")
		var others int
		if err := db.QueryRow(fmt.Sprintf("SELECT count(*) FROM read_parquet('%s') WHERE tenant <> '%s'", glob, tn)).Scan(&others); err != nil {
			h.t.Fatalf("tenant %s: %v", tn, err)
		}
		if others != 0 {
			h.t.Errorf("tenant %s: %d rows of other tenants", tn, others)
		}
		rows, err := db.Query(fmt.Sprintf(`SELECT resource_type, id, version_id, operation FROM read_parquet('%s')
			QUALIFY row_number() OVER (PARTITION BY resource_type, id ORDER BY TRY_CAST(version_id AS BIGINT) DESC, "offset" DESC) = 1`, glob))
		if err != nil {
			h.t.Fatal(err)
		}
		got := 0
		for rows.Next() {
			var typ, id, ver, op string
			if err := rows.Scan(&typ, &id, &ver, &op); err != nil {
				h.t.Fatal(err)
			}
			got++
			w, ok := want[tn][typ+"/"+id]
			if !ok || w.VersionID != ver || w.Deleted != (op == string(notification.OpDelete)) {
				h.t.Errorf("tenant %s: %s/%s: got version %s %s, want %+v", tn, typ, id, ver, op, w)
			}
		}
		rows.Close()
		if got != len(want[tn]) {
			h.t.Errorf("tenant %s: got %d resources, want %d", tn, got, len(want[tn]))
		}
		h.verifyViews(tn, root, want[tn])
	}
}

// verifyViews checks the typed views of a tenant's session against the
// expectation: one row per live resource in each resource's own view.
func (h *harness) verifyViews(tenant, root string, want map[string]synth.Expected) {
	h.t.Helper()
	s, err := query.Open(context.Background(), tenant, root, query.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	defer s.Close()
	live := map[string]int{}
	for _, e := range want {
		if !e.Deleted {
			live[query.ViewName(e.ResourceType)]++
		}
	}
	for view, n := range live {
		rows, err := s.Query(context.Background(), "SELECT count(*), count(DISTINCT id) FROM "+view)
		if err != nil {
			h.t.Fatalf("tenant %s view %s: %v", tenant, view, err)
		}
		var got, distinct int
		rows.Next()
		err = rows.Scan(&got, &distinct)
		rows.Close()
		if err != nil {
			h.t.Fatal(err)
		}
		if got != n || distinct != n {
			h.t.Errorf("tenant %s view %s: got %d rows (%d distinct ids), want %d", tenant, view, got, distinct, n)
		}
	}
}

func TestConsumerEndToEnd(t *testing.T) {
	opts := synth.DefaultOptions()
	opts.Patients = 15
	opts.Tenants = []string{"acme", "globex"}
	h := newHarness(t, opts)
	total := h.produce(-1)
	reg := prometheus.NewRegistry()
	c := h.consumer(reg, opts.Tenants)
	h.runUntilCommitted(c, int64(total))
	h.verify()
	counts := h.gen.Counts()
	if got, want := counterSum(t, reg, "fhirlake_consumer_dead_letters_total"), counts.Malformed+counts.Unroutable; got != want {
		t.Errorf("dead letters: got %d, want %d", got, want)
	}
	if got := counterSum(t, reg, "fhirlake_consumer_control_messages_total"); got != counts.Controls {
		t.Errorf("control messages: got %d, want %d", got, counts.Controls)
	}
	if c.InUse() != 0 {
		t.Errorf("buffered bytes after shutdown: got %d, want 0", c.InUse())
	}
}

// TestConsumerRebalance adds a second member mid-stream and removes it
// again; nothing may be lost.
func TestConsumerRebalance(t *testing.T) {
	opts := synth.DefaultOptions()
	opts.Patients = 30
	opts.Tenants = []string{"acme", "globex", "initech"}
	h := newHarness(t, opts)
	total := h.gen.Total()
	var wg sync.WaitGroup
	start := func() context.CancelFunc {
		c := h.consumer(nil, opts.Tenants)
		ctx, cancel := context.WithCancel(context.Background())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Run(ctx); err != nil {
				t.Errorf("consumer: %v", err)
			}
		}()
		return cancel
	}
	stop1 := start()
	h.produce(total / 3)
	stop2 := start()
	h.produce(total / 3)
	time.Sleep(300 * time.Millisecond)
	stop2()
	h.produce(-1)
	h.waitCommitted(int64(total))
	stop1()
	wg.Wait()
	h.verify()
}

// series returns the series of the metric family called name in reg.
func series(t *testing.T, reg *prometheus.Registry, name string) []*dto.Metric {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}

func counterSum(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	sum := 0.0
	for _, m := range series(t, reg, name) {
		sum += m.GetCounter().GetValue()
	}
	return int(sum)
}

// blockingStore holds every Put until released, like a store that is down.
type blockingStore struct {
	sink.Store
	release chan struct{}
}

func (b *blockingStore) Put(ctx context.Context, key, path string) error {
	select {
	case <-b.release:
		return b.Store.Put(ctx, key, path)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestConsumerBackpressure: with the store stalled, buffered bytes stay
// within the budget plus one fetch, fetching pauses, and once the store
// comes back everything lands.
func TestConsumerBackpressure(t *testing.T) {
	opts := synth.DefaultOptions()
	opts.Patients = 40
	opts.Tenants = []string{"acme"}
	h := newHarness(t, opts)
	release := make(chan struct{})
	h.stores["acme"] = &blockingStore{Store: h.stores["acme"], release: release}
	total := h.produce(-1)
	const budget = 256 << 10
	reg := prometheus.NewRegistry()
	c := h.consumerWith(reg, opts.Tenants, func(o *Options) {
		o.MaxBufferedBytes = budget
		o.MaxBytes = 16 << 10
		o.MaxRows = 1_000_000
		// Longer than the outage below, so that memory drives its flushes;
		// short enough that the last buffers, below every other limit once
		// the store is back, are flushed by age.
		o.MaxAge = 3 * time.Second
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	limit := budget + FetchMaxBytes(budget)
	var peak int64
	pausedSeen := false
	for i := 0; i < 40; i++ {
		time.Sleep(25 * time.Millisecond)
		peak = max(peak, c.InUse())
		if gaugeValue(t, reg, "fhirlake_consumer_paused_partitions") > 0 {
			pausedSeen = true
		}
	}
	if peak > limit {
		t.Errorf("buffered %d bytes with the store down, want at most %d (budget + one fetch)", peak, limit)
	}
	if !pausedSeen {
		t.Error("fetching never paused although the budget was exhausted")
	}
	close(release)
	h.waitCommitted(int64(total))
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.verify()
	t.Logf("peak buffered %d bytes (budget %d, limit %d)", peak, budget, limit)
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	sum := 0.0
	for _, m := range series(t, reg, name) {
		sum += m.GetGauge().GetValue()
	}
	return sum
}

// A stop asked for while the consumer starts (checking the cluster, reading the
// erasure records) is a clean stop: Run returns no error, as after a stop while
// it consumes, so that a process stopped just after its start exits 0.
func TestRunStoppedWhileStartingIsClean(t *testing.T) {
	h := newHarness(t, synth.Options{Tenants: []string{"acme"}, Patients: 1, Seed: 1})
	started := make(chan struct{})
	c := h.consumerWith(nil, []string{"acme"}, func(o *Options) {
		o.Erasures = func(ctx context.Context, _ string) ([]*lake.Erasure, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-started
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("stopped while reading the erasure records: Run returned %v", err)
	}
}
