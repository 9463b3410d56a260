package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"fhirlake/lake"
	"fhirlake/notification"
	"fhirlake/rows"
)

// ErasureReader reads one tenant's erasure records (sink.ReadErasures on its store).
type ErasureReader func(ctx context.Context, tenant string) ([]*lake.Erasure, error)

// erasures applies the tenants' erasure records to the changes consumed: a change
// an erasure covers (lake.Erasures.Erased: an erased resource, or one in the erased
// patient's compartment, before the erasure's position on its partition) is
// dropped, so that a replay of the topic never writes it again. The records are
// read before the first poll and again every refresh interval, by a goroutine that
// Run starts and waits for; workers read the current set through an atomic
// pointer and never wait for a store.
type erasures struct {
	read    ErasureReader
	tenants []string
	every   time.Duration
	log     *slog.Logger
	cur     atomic.Pointer[map[string]*lake.Erasures]
	dropped *prometheus.CounterVec
}

func newErasures(read ErasureReader, tenants []string, every time.Duration, reg prometheus.Registerer, log *slog.Logger) *erasures {
	e := &erasures{read: read, tenants: tenants, every: every, log: log,
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_consumer_erased_changes_total",
			Help: "Changes dropped because an erasure record covers them (a replay of an erased patient's changes).",
		}, []string{"tenant"})}
	if reg != nil {
		reg.MustRegister(e.dropped)
	}
	return e
}

// load reads every tenant's records and makes them current. On an error the
// previous set stays.
func (e *erasures) load(ctx context.Context) error {
	next := make(map[string]*lake.Erasures, len(e.tenants))
	var errs []error
	for _, t := range e.tenants {
		recs, err := e.read(ctx, t)
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", t, err))
			if prev := e.cur.Load(); prev != nil {
				next[t] = (*prev)[t]
			}
			continue
		}
		if len(recs) > 0 {
			next[t] = lake.NewErasures(recs)
		}
	}
	e.cur.Store(&next)
	return errors.Join(errs...)
}

// keep reads the records again every interval until ctx ends.
func (e *erasures) keep(ctx context.Context) {
	t := time.NewTicker(e.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, e.every)
		if err := e.load(rctx); err != nil && ctx.Err() == nil {
			e.log.Warn("read erasure records; the last ones read stay in force", "err", err)
		}
		cancel()
	}
}

// erased reports whether the change is covered by an erasure of its tenant, and
// counts it.
func (e *erasures) erased(tenant string, ev *notification.Event, at rows.Coordinates) bool {
	if e == nil {
		return false
	}
	cur := e.cur.Load()
	if cur == nil {
		return false
	}
	s := (*cur)[tenant]
	if !s.Erased(ev.ResourceType, ev.ID, at.Topic, at.Partition, at.Offset, ev.Resource) {
		return false
	}
	e.dropped.WithLabelValues(tenant).Inc()
	return true
}
