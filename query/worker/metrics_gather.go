package worker

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
)

// gatherTimeout bounds each worker's answer to a scrape; a worker busy
// past it is left out of that scrape rather than hold the others up.
const gatherTimeout = time.Second

// Gather makes a Supervisor a prometheus.Gatherer: the metrics of every
// running worker's sessions (view builds, refresh errors, …), which live
// in the worker processes, merged for the front's /metrics. A worker that
// does not answer in time is left out of that scrape; its counters start
// again from zero when it is replaced, as a restarted process's do.
func (s *Supervisor) Gather() ([]*dto.MetricFamily, error) {
	s.mu.Lock()
	procs := make([]*proc, 0, len(s.workers))
	for _, p := range s.workers {
		if !p.stopping {
			procs = append(procs, p)
		}
	}
	s.mu.Unlock()
	byName := map[string]*dto.MetricFamily{}
	for _, p := range procs {
		select {
		case <-p.ready:
		default:
			continue // still starting
		}
		if !p.readyOK {
			continue
		}
		fams, err := p.metrics()
		if err != nil {
			s.log.Debug("worker metrics", "tenant", p.tenant, "err", err)
			continue
		}
		for name, f := range fams {
			if m, ok := byName[name]; ok {
				mergeFamily(m, f)
				continue
			}
			byName[name] = f
		}
	}
	out := make([]*dto.MetricFamily, 0, len(byName))
	for _, f := range byName {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, nil
}

// mergeFamily adds f's series to into. Series with the same labels (the
// tenant label is "*" unless serve.metrics_tenant_labels is set) are added
// up, as one process would have counted them.
func mergeFamily(into, f *dto.MetricFamily) {
	index := map[string]*dto.Metric{}
	for _, m := range into.Metric {
		index[labelKey(m)] = m
	}
	for _, m := range f.Metric {
		old, ok := index[labelKey(m)]
		if !ok {
			into.Metric = append(into.Metric, m)
			index[labelKey(m)] = m
			continue
		}
		addMetric(old, m)
	}
}

func labelKey(m *dto.Metric) string {
	var b strings.Builder
	for _, l := range m.GetLabel() {
		b.WriteString(l.GetName())
		b.WriteByte(0)
		b.WriteString(l.GetValue())
		b.WriteByte(0)
	}
	return b.String()
}

// addMetric adds m's value to into's: counters, gauges and untyped values,
// and a histogram's count, sum and buckets (the same bounds in every
// worker: one binary made them).
func addMetric(into, m *dto.Metric) {
	switch {
	case into.Counter != nil && m.Counter != nil:
		into.Counter.Value = proto.Float64(into.Counter.GetValue() + m.Counter.GetValue())
	case into.Gauge != nil && m.Gauge != nil:
		into.Gauge.Value = proto.Float64(into.Gauge.GetValue() + m.Gauge.GetValue())
	case into.Untyped != nil && m.Untyped != nil:
		into.Untyped.Value = proto.Float64(into.Untyped.GetValue() + m.Untyped.GetValue())
	case into.Histogram != nil && m.Histogram != nil:
		h, o := into.Histogram, m.Histogram
		h.SampleCount = proto.Uint64(h.GetSampleCount() + o.GetSampleCount())
		h.SampleSum = proto.Float64(h.GetSampleSum() + o.GetSampleSum())
		for i, b := range h.Bucket {
			if i < len(o.Bucket) && b.GetUpperBound() == o.Bucket[i].GetUpperBound() {
				b.CumulativeCount = proto.Uint64(b.GetCumulativeCount() + o.Bucket[i].GetCumulativeCount())
			}
		}
	}
}

// metrics asks the worker for its registry's metrics.
func (p *proc) metrics() (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), gatherTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://worker/_worker/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.proxy.Transport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("worker metrics: status %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}
