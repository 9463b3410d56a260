package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/flatten"
	"fhirlake/kafkaconn"
	"fhirlake/notification"
	"fhirlake/rows"
	"fhirlake/sink"
)

// Options configure a Consumer. Zero values take the documented defaults.
type Options struct {
	Brokers         []string
	Topics          []string
	Group           string
	DeadLetterTopic string
	ClientID        string
	// Routing and Tenants drive tenant resolution.
	Routing RouteOptions
	Tenants []string
	// Fetcher reads id-only payloads from tenants' FHIR servers; nil
	// dead-letters them.
	Fetcher *notification.Fetcher
	// MaxRows, MaxBytes and MaxAge bound one partition's buffer; whichever is
	// reached first flushes it (flushPolicy). Defaults: 100000 rows, 64 MiB,
	// 5 s.
	MaxRows  int
	MaxBytes int64
	MaxAge   time.Duration
	// MaxBufferedBytes is the budget for all buffers; beyond it fetching
	// pauses until flushes free memory. Default: 512 MiB.
	MaxBufferedBytes int64
	// RevokeTimeout bounds how long a revoked partition may spend flushing
	// before it is released without a commit (its records then replay on the
	// new owner). Default: 30 s.
	RevokeTimeout time.Duration
	// ShutdownTimeout bounds the final flush on shutdown. Default: 30 s.
	ShutdownTimeout time.Duration
	// Views are the SQL-on-FHIR views written next to the raw-resource
	// dataset, one dataset each under speed/<view>/. None: raw data only.
	Views []*flatten.View
	// ClientOpts are appended to the Kafka client options (tests use them to
	// shorten timeouts).
	ClientOpts []kgo.Opt
	// Erasures reads a tenant's erasure records; the changes they cover are
	// dropped (erasure.go). Run reads them before its first poll, and fails if
	// it cannot, then every ErasureRefresh. nil: none are applied.
	Erasures ErasureReader
	// ErasureRefresh is how often the erasure records are read again; an
	// erasure is in force in a running consumer within it. Default: 30 s.
	ErasureRefresh time.Duration
}

func (o *Options) defaults() {
	if o.MaxRows <= 0 {
		o.MaxRows = 100_000
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 64 << 20
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 5 * time.Second
	}
	if o.MaxBufferedBytes <= 0 {
		o.MaxBufferedBytes = 512 << 20
	}
	if o.RevokeTimeout <= 0 {
		o.RevokeTimeout = 30 * time.Second
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	if o.ClientID == "" {
		o.ClientID = "fhirlake"
	}
	if o.ErasureRefresh <= 0 {
		o.ErasureRefresh = 30 * time.Second
	}
}

// Consumer is one member of the consumer group.
//
// Goroutines: Run's caller runs the poll loop. The rebalance callbacks
// (assigned, revoked, lost) run on the client's group-management
// goroutine, one at a time and, with BlockRebalanceOnPoll, never between a
// poll and its AllowRebalance. Run starts the lag observer and stops it on
// return. Each assigned partition has a worker goroutine and a flusher
// (worker), started by assigned and stopped, and waited for, by revoked,
// lost or shutdown (stopWorkers). A flush group runs while it writes its
// members' files (flushGroup).
type Consumer struct {
	opts    Options
	cl      *kgo.Client
	writer  *sink.Writer
	router  *Router
	fetcher *notification.Fetcher
	log     *slog.Logger
	m       *metrics
	// plans are opts.Views compiled together per resource type, for
	// the workers' buffers.
	plans []*flatten.Plan

	// The memory budget (memory.go). mem counts the Arrow memory of
	// filling buffers and of sealed batches not yet encoded.
	mem *countingAllocator
	// buffered is the bytes of polled records not yet decoded; with the
	// Arrow memory counted by mem it makes up what the budget limits.
	buffered atomic.Int64
	// sealed is the record bytes of sealed batches not yet released: memory
	// that flushes in progress will free.
	sealed atomic.Int64
	// avgRecord is a moving average of record value sizes, for poll sizing.
	avgRecord atomic.Int64
	// freed wakes the paused poll loop when sealed records are released.
	freed chan struct{}

	// mu guards workers and forming. Lock order: Consumer.mu, then
	// flushGroup.mu, never the reverse. Members are signalled
	// (flushGroup.signal takes the group's lock) under mu, so that a worker
	// found in workers has not yet been sent its stop: it reads the signal
	// or, exiting, leaves the group. dlqTracker.mu and freshness.mu are
	// leaves: nothing else is taken under them.
	mu      sync.Mutex
	workers map[tp]*worker
	// forming is the last group flushLargest signalled.
	forming *flushGroup

	// fatal carries an error that must stop the consumer.
	fatal chan error
	// erasures drops the changes of erased patients; nil without
	// Options.Erasures.
	erasures *erasures
}

type tp struct {
	topic     string
	partition int32
}

// New creates a consumer that writes through w.
func New(opts Options, w *sink.Writer, reg prometheus.Registerer, log *slog.Logger) (*Consumer, error) {
	opts.defaults()
	if len(opts.Brokers) == 0 || len(opts.Topics) == 0 || opts.Group == "" || opts.DeadLetterTopic == "" {
		return nil, errors.New("consumer: brokers, topics, group and dead-letter topic are required")
	}
	if log == nil {
		log = slog.Default()
	}
	if err := rows.CheckViews(opts.Views); err != nil {
		return nil, err
	}
	c := &Consumer{
		plans:   flatten.Plans(opts.Views),
		opts:    opts,
		writer:  w,
		router:  NewRouter(opts.Routing, opts.Tenants),
		fetcher: opts.Fetcher,
		log:     log,
		m:       newMetrics(reg),
		mem:     newCountingAllocator(),
		workers: map[tp]*worker{},
		fatal:   make(chan error, 1),
		freed:   make(chan struct{}, 1),
	}
	if opts.Erasures != nil {
		c.erasures = newErasures(opts.Erasures, opts.Tenants, opts.ErasureRefresh, reg, log)
	}
	fetchMax := FetchMaxBytes(opts.MaxBufferedBytes)
	kopts := []kgo.Opt{
		kgo.SeedBrokers(opts.Brokers...),
		// One fetch response at a time is held by the client before it is
		// polled; bounding it bounds memory beyond the buffers' budget.
		kgo.FetchMaxBytes(int32(fetchMax)),
		kgo.FetchMaxPartitionBytes(int32(fetchMax / FetchPartitionShare)),
		kgo.BrokerMaxReadBytes(int32(max(fetchMax*2, 32<<20))),
		kgo.MaxConcurrentFetches(1),
		kgo.ClientID(opts.ClientID),
		kgo.ConsumerGroup(opts.Group),
		kgo.ConsumeTopics(opts.Topics...),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(c.assigned),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.lost),
		// Dead letters must be durable before the offsets that cover them
		// are committed.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(5 * time.Millisecond),
	}
	kopts = append(kopts, opts.ClientOpts...)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	c.cl = cl
	return c, nil
}

// Run consumes until ctx is done, then flushes and commits what it holds,
// within ShutdownTimeout, and leaves the group.
//
// It first asks the cluster for its brokers: refused credentials or an
// untrusted certificate end it at once (kafkaconn.Check), as the same
// failures later do (poll), instead of retries that cannot succeed.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.cl.Close()
	// A stop asked for before the first poll is a clean stop: nothing was read.
	if err := kafkaconn.Check(ctx, c.cl); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if c.erasures != nil {
		// Before the first poll: a replay must not write a change an erasure
		// covers. A tenant whose records cannot be read (its store refuses or
		// is down) must not stop the others: its changes go unchecked until a
		// refresh reads them, and the compactor still keeps them out of
		// snapshots.
		if err := c.erasures.load(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.log.Error("read erasure records: the changes of these tenants are not checked against erasures until a refresh reads them", "err", err)
		}
		eraseCtx, stopErase := context.WithCancel(context.Background())
		eraseDone := make(chan struct{})
		go func() { defer close(eraseDone); c.erasures.keep(eraseCtx) }()
		defer func() { stopErase(); <-eraseDone }()
	}
	obsCtx, stopObs := context.WithCancel(context.Background())
	obsDone := make(chan struct{})
	go func() { defer close(obsDone); c.observe(obsCtx) }()
	defer func() { stopObs(); <-obsDone }()
	paused := false
	var runErr error
	for ctx.Err() == nil {
		select {
		case err := <-c.fatal:
			runErr = err
		default:
		}
		if runErr != nil {
			break
		}
		c.m.buffered.Set(float64(c.InUse()))
		paused = c.backpressure(paused)
		n := c.pollSize()
		if n == 0 || paused {
			// Over budget: poll nothing until flushes free memory (a poll
			// would return nothing from paused partitions, and only once its
			// timeout ran out, long after the memory came back). Not polling
			// does not hold up rebalances.
			select {
			case <-ctx.Done():
			case <-c.freed:
			case <-time.After(pausedRecheck):
			}
			continue
		}
		if closed := c.poll(ctx, n); closed {
			break
		}
	}
	c.shutdown()
	return runErr
}

// poll polls up to n records and dispatches them to their partitions'
// workers, then lets a rebalance through. It reports whether the client
// is closed.
func (c *Consumer) poll(ctx context.Context, n int) (closed bool) {
	pctx, cancel := context.WithTimeout(ctx, pollTimeout)
	fetches := c.cl.PollRecords(pctx, n)
	cancel()
	if fetches.IsClientClosed() {
		return true
	}
	fetches.EachError(func(topic string, p int32, err error) {
		if perm := kafkaconn.Permanent(err); perm != nil {
			select {
			case c.fatal <- perm:
			default: // one fatal error is enough to stop
			}
			return
		}
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			c.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
		}
	})
	fetches.EachPartition(func(f kgo.FetchTopicPartition) {
		if len(f.Records) == 0 {
			return
		}
		c.mu.Lock()
		w := c.workers[tp{f.Topic, f.Partition}]
		c.mu.Unlock()
		if w == nil {
			// Assigned callbacks run before records are returned; a
			// missing worker means the partition was just lost.
			return
		}
		size := recordBytes(f.Records)
		c.buffered.Add(size)
		c.observeRecordSize(size, len(f.Records))
		last := f.Records[len(f.Records)-1].Offset
		c.dispatch(ctx, w, delivery{recs: f.Records, caughtUp: last+1 >= f.HighWatermark}, size)
	})
	c.cl.AllowRebalance()
	return false
}

// pollTimeout bounds a poll, so that the poll loop looks at the budget, a
// fatal error and ctx, and lets rebalances through, at least this often.
const pollTimeout = 200 * time.Millisecond

// pausedRecheck is how often the poll loop, paused over budget, looks at
// the budget again without being woken: decoding queued records and
// releasing filling buffers also free memory, and do not signal freed.
const pausedRecheck = 20 * time.Millisecond

// StallAfter is how long the poll loop waits for a partition's worker
// (busy flushing, or retrying a store that is down) before pausing that
// partition and letting rebalances through while it keeps waiting.
const StallAfter = 100 * time.Millisecond

// dispatch hands polled records to their partition's worker. While the
// worker cannot take them, the partition is paused (so nothing more is
// fetched for it) and rebalances are allowed; if the partition is taken
// away meanwhile, the records are dropped uncommitted and replay on the new
// owner.
func (c *Consumer) dispatch(ctx context.Context, w *worker, recs delivery, size int64) {
	select {
	case w.in <- recs:
		return
	default:
	}
	stalled := false
	timer := time.NewTimer(StallAfter)
	defer timer.Stop()
	for {
		select {
		case w.in <- recs:
			if stalled {
				c.cl.ResumeFetchPartitions(map[string][]int32{w.topic: {w.partition}})
				c.m.paused.Set(float64(countPartitions(c.cl.PauseFetchPartitions(nil))))
			}
			return
		case <-w.done:
			c.release(size)
			return
		case <-ctx.Done():
			c.release(size)
			return
		case <-timer.C:
			if !stalled {
				stalled = true
				paused := c.cl.PauseFetchPartitions(map[string][]int32{w.topic: {w.partition}})
				c.m.paused.Set(float64(countPartitions(paused)))
				c.log.Warn("partition stalled behind its flush; fetching paused", "topic", w.topic, "partition", w.partition)
			}
			c.cl.AllowRebalance()
			timer.Reset(StallAfter)
		}
	}
}

func countPartitions(m map[string][]int32) int {
	n := 0
	for _, ps := range m {
		n += len(ps)
	}
	return n
}

func (c *Consumer) assignedPartitions() map[string][]int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]int32{}
	for k := range c.workers {
		out[k.topic] = append(out[k.topic], k.partition)
	}
	return out
}

// shutdown flushes and commits every partition, then leaves the group.
func (c *Consumer) shutdown() {
	c.mu.Lock()
	ws := make([]*worker, 0, len(c.workers))
	for k, w := range c.workers {
		ws = append(ws, w)
		delete(c.workers, k)
	}
	c.mu.Unlock()
	c.stopWorkers(ws, stopRequest{mode: stopFlush, reason: reasonShutdown}, c.opts.ShutdownTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.cl.LeaveGroupContext(ctx); err != nil {
		c.log.Warn("leave group", "err", err)
	}
}

func (c *Consumer) assigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, ps := range assigned {
		for _, p := range ps {
			key := tp{topic, p}
			if _, ok := c.workers[key]; ok {
				continue
			}
			w := newWorker(c, topic, p)
			c.workers[key] = w
			go w.run()
			c.log.Debug("partition assigned", "topic", topic, "partition", p)
		}
	}
}

func (c *Consumer) revoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	c.stopWorkers(c.take(revoked), stopRequest{mode: stopFlush, reason: reasonRevoke}, c.opts.RevokeTimeout)
}

func (c *Consumer) lost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.stopWorkers(c.take(lost), stopRequest{mode: stopDrop}, 0)
}

func (c *Consumer) take(parts map[string][]int32) []*worker {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ws []*worker
	for topic, ps := range parts {
		for _, p := range ps {
			key := tp{topic, p}
			if w, ok := c.workers[key]; ok {
				ws = append(ws, w)
				delete(c.workers, key)
			}
		}
	}
	return ws
}

// stopWorkers sends req to workers, which stop concurrently, and waits for
// all of them; past timeout (0: none) it cancels them, so that they return
// without committing.
func (c *Consumer) stopWorkers(ws []*worker, req stopRequest, timeout time.Duration) {
	for _, w := range ws {
		if req.mode == stopDrop {
			w.cancel() // abandon any flush in progress: nothing may be committed
		}
		w.stop <- req
	}
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	for _, w := range ws {
		select {
		case <-w.done:
		case <-timer:
			c.log.Warn("flush did not finish in time; releasing partitions without commit", "reason", req.reason, "timeout", timeout)
			for _, w := range ws {
				w.cancel()
			}
			for _, w := range ws {
				<-w.done
			}
			return
		}
	}
}
