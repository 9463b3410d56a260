package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// WatchOptions configure a CompletenessWatch.
type WatchOptions struct {
	// Brokers are the seed brokers.
	Brokers []string
	// ClientOpts connect the watch's clients to the cluster (TLS, SASL:
	// kafkaconn.Options), before the watch's own options.
	ClientOpts []kgo.Opt
	// ClientID names the watch's clients to the brokers.
	ClientID string
	// Group is the consumer group whose committed offsets are the lake's
	// durable positions, and Topics the topics it consumes.
	Group  string
	Topics []string
	// Routes is routing.topics: a topic given to one tenant carries no
	// other tenant's changes.
	Routes map[string]string
	// Tenants are the tenants to report.
	Tenants []string
	// Interval is the time between readings: every reader (requests,
	// scrapes) gets the latest, so a burst of them costs the brokers
	// nothing. Default: 5s.
	Interval time.Duration
	// Timeout bounds one reading; one that does not end within it makes
	// the completeness unknown until the next succeeds. Default: 3s.
	Timeout time.Duration
}

// CompletenessWatch reads the group's durable positions every Interval
// and keeps the latest reading, per tenant.
type CompletenessWatch struct {
	o   WatchOptions
	log *slog.Logger

	mu     sync.Mutex // a leaf: guards last and failed
	last   TenantCompleteness
	failed bool
}

// TenantCompleteness is one reading of every tenant's completeness.
type TenantCompleteness struct {
	// Checked is when Kafka was read; zero when the latest reading failed
	// (or none has ended yet): the completeness is unknown.
	Checked time.Time
	// Through maps a tenant to the time through which its lake is
	// complete: every change produced before it is durable.
	Through map[string]time.Time
}

// NewCompletenessWatch returns a watch; Run makes its readings.
func NewCompletenessWatch(o WatchOptions, log *slog.Logger) *CompletenessWatch {
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &CompletenessWatch{o: o, log: log}
}

// Run reads Kafka at once, then every Interval, until ctx is done.
func (w *CompletenessWatch) Run(ctx context.Context) error {
	opts := append(slices.Clip(w.o.ClientOpts), kgo.SeedBrokers(w.o.Brokers...), kgo.ClientID(w.o.ClientID),
		kgo.DialTimeout(min(2*time.Second, w.o.Timeout)), kgo.RequestRetries(1))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	t := time.NewTicker(w.o.Interval)
	defer t.Stop()
	for {
		w.read(ctx, adm, opts)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (w *CompletenessWatch) read(ctx context.Context, adm *kadm.Client, probe []kgo.Opt) {
	rctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	c, err := ReadCompleteness(rctx, adm, probe, w.o.Group, w.o.Topics)
	cancel()
	next := TenantCompleteness{}
	if err == nil {
		next = TenantCompleteness{Checked: c.Checked, Through: map[string]time.Time{}}
		for _, tenant := range w.o.Tenants {
			if t, ok := c.Through(TenantTopics(tenant, w.o.Topics, w.o.Routes)); ok {
				next.Through[tenant] = t
			}
		}
	}
	w.mu.Lock()
	wasFailing := w.failed
	w.last, w.failed = next, err != nil
	w.mu.Unlock()
	switch {
	case err != nil && ctx.Err() != nil:
	case err != nil && !wasFailing:
		w.log.Warn("the lake's completeness is unknown: Kafka's positions cannot be read", "group", w.o.Group, "err", err)
	case err != nil:
		w.log.Debug("the lake's completeness is still unknown", "group", w.o.Group, "err", err)
	case wasFailing:
		w.log.Info("the lake's completeness is known again", "group", w.o.Group)
	}
}

// Latest returns the latest reading. A reading older than three intervals
// (Run has stopped) counts as unknown: an old time is never presented as
// a fresh one.
func (w *CompletenessWatch) Latest() TenantCompleteness {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last.Checked.IsZero() || time.Since(w.last.Checked) > 3*w.o.Interval+w.o.Timeout {
		return TenantCompleteness{}
	}
	return w.last
}
