package consumer

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
)

// LagInterval is how often the consumer publishes its group's lag.
const LagInterval = 10 * time.Second

// observe publishes the group's lag per partition until ctx is done.
func (c *Consumer) observe(ctx context.Context) {
	adm := kadm.NewClient(c.cl)
	t := time.NewTicker(LagInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		lag, err := Lag(lctx, adm, c.opts.Group, c.opts.Topics)
		cancel()
		if err != nil {
			c.log.Debug("lag", "err", err)
			continue
		}
		c.m.lag.Reset()
		for _, p := range lag.Partitions {
			c.m.lag.WithLabelValues(p.Topic, strconv.Itoa(int(p.Partition))).Set(float64(p.Lag))
		}
	}
}

// freshness reports, per tenant, the age of the newest change made durable:
// now − newest lastUpdated written. It is computed at scrape time so that
// it keeps growing while nothing new arrives.
type freshness struct {
	mu     sync.Mutex
	newest map[string]time.Time
	desc   *prometheus.Desc
}

func newFreshness() *freshness {
	return &freshness{
		newest: map[string]time.Time{},
		desc: prometheus.NewDesc("fhirlake_consumer_freshness_seconds",
			"Seconds since the newest lastUpdated among the resources made durable, per tenant.", []string{"tenant"}, nil),
	}
}

func (f *freshness) observe(tenant string, t time.Time) {
	f.mu.Lock()
	if t.After(f.newest[tenant]) {
		f.newest[tenant] = t
	}
	f.mu.Unlock()
}

func (f *freshness) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }

func (f *freshness) Collect(ch chan<- prometheus.Metric) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	for tenant, t := range f.newest {
		ch <- prometheus.MustNewConstMetric(f.desc, prometheus.GaugeValue, now.Sub(t).Seconds(), tenant)
	}
}
