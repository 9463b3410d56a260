package web

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"fhirlake/lake"
	"fhirlake/query"
)

// The lake's completeness: the time through which every change produced
// before it is durable, read from the consumer group's committed offsets
// by the process that holds the Kafka client (the front). A worker holds
// no broker credentials: the front hands it the completeness in the
// request's headers, and answers them to the client on every tenant
// route.
const (
	// CompleteThroughHeader is the time through which the tenant's lake
	// is complete (RFC 3339, UTC), or "unknown" when Kafka's positions
	// cannot be read. Absent when the server has no Kafka configured.
	CompleteThroughHeader = "Fhirlake-Complete-Through"
	// CompleteCheckedHeader is when Kafka was read for it.
	CompleteCheckedHeader = "Fhirlake-Complete-Checked"
)

// CompletenessFunc returns the latest reading of the lake's completeness.
// It must not wait for Kafka: requests call it.
type CompletenessFunc func() Completeness

// Completeness is one reading of every tenant's completeness.
type Completeness struct {
	// Checked is when Kafka was read; zero: unknown (unreachable, not read
	// yet).
	Checked time.Time
	// Through maps a tenant to the time through which its lake is
	// complete; a tenant missing from it is unknown.
	Through map[string]time.Time
}

// completenessJSON is what /tables and the status routes show of it.
type completenessJSON struct {
	// State is "ok", or "unknown" with Error saying why.
	State string `json:"state"`
	// CompleteThrough is the time through which the lake (snapshot and
	// speed layer together, as the views read them) is complete.
	CompleteThrough *time.Time `json:"complete_through"`
	// Checked is when Kafka was read for it.
	Checked *time.Time `json:"checked"`
	// SnapshotWatermark is the batch snapshot's watermark: the snapshot
	// holds the changes made durable before it. Null without a snapshot.
	SnapshotWatermark *time.Time `json:"snapshot_watermark"`
	Error             string     `json:"error,omitempty"`
}

const (
	completeUnknown       = "unknown"
	errKafkaNotConfigured = "kafka is not configured"
	errKafkaUnreadable    = "the consumer group's positions cannot be read from Kafka; the server log says why"
)

// tenantCompleteness is the tenant's completeness as this server knows it:
// read here (the front, or a server without workers), else handed over by
// the front in the request's headers (a worker).
func (s *Server) tenantCompleteness(r *http.Request, tenant string) (through, checked time.Time, errMsg string) {
	switch {
	case s.opts.Completeness != nil:
		c := s.opts.Completeness()
		t, ok := c.Through[tenant]
		if c.Checked.IsZero() || !ok {
			return time.Time{}, time.Time{}, errKafkaUnreadable
		}
		return t, c.Checked, ""
	case s.opts.TrustCompleteness:
		v := r.Header.Get(CompleteThroughHeader)
		if v == "" {
			return time.Time{}, time.Time{}, errKafkaNotConfigured
		}
		t, err1 := time.Parse(time.RFC3339Nano, v)
		c, err2 := time.Parse(time.RFC3339Nano, r.Header.Get(CompleteCheckedHeader))
		if err1 != nil || err2 != nil {
			return time.Time{}, time.Time{}, errKafkaUnreadable
		}
		return t, c, ""
	default:
		return time.Time{}, time.Time{}, errKafkaNotConfigured
	}
}

// completenessOf is the JSON of the tenant's completeness beside its
// snapshot m (nil: none).
func (s *Server) completenessOf(r *http.Request, tenant string, m *lake.Manifest) completenessJSON {
	through, checked, msg := s.tenantCompleteness(r, tenant)
	out := completenessJSON{State: "ok"}
	if msg != "" {
		out.State, out.Error = completeUnknown, msg
	} else {
		through, checked = through.UTC(), checked.UTC()
		out.CompleteThrough, out.Checked = &through, &checked
	}
	if m != nil {
		wm := m.Watermark.Modified.UTC()
		out.SnapshotWatermark = &wm
	}
	return out
}

// withCompleteness sets the completeness headers of a tenant route: on the
// response for the client, and on the request for a worker behind this
// front (replacing whatever the client sent). A server without Kafka sets
// none; a worker's own are left to its front.
func (s *Server) withCompleteness(w http.ResponseWriter, r *http.Request, tenant string) {
	if s.opts.TrustCompleteness {
		return
	}
	r.Header.Del(CompleteThroughHeader)
	r.Header.Del(CompleteCheckedHeader)
	if s.opts.Completeness == nil {
		return
	}
	through, checked, msg := s.tenantCompleteness(r, tenant)
	for _, h := range []http.Header{w.Header(), r.Header} {
		if msg != "" {
			h.Set(CompleteThroughHeader, completeUnknown)
			continue
		}
		h.Set(CompleteThroughHeader, through.UTC().Format(time.RFC3339Nano))
		h.Set(CompleteCheckedHeader, checked.UTC().Format(time.RFC3339Nano))
	}
}

// completenessCollector is fhirlake_lake_complete_through_seconds, read at
// scrape time from the latest reading. Without tenant labels it is one
// series, tenant="*", the earliest of every tenant's; a tenant whose
// completeness is unknown has no series (an absent series, never an old
// time).
type completenessCollector struct {
	get     CompletenessFunc
	tenants []string
	labels  bool
	desc    *prometheus.Desc
}

func newCompletenessCollector(get CompletenessFunc, tenants []string, labels bool) *completenessCollector {
	return &completenessCollector{get: get, tenants: tenants, labels: labels,
		desc: prometheus.NewDesc("fhirlake_lake_complete_through_seconds",
			"Unix time through which the tenant's lake is complete: every change produced to Kafka before it is durable. Absent while unknown.",
			[]string{"tenant"}, nil)}
}

func (c *completenessCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *completenessCollector) Collect(ch chan<- prometheus.Metric) {
	got := c.get()
	if got.Checked.IsZero() {
		return
	}
	var all time.Time
	for _, tenant := range c.tenants {
		t, ok := got.Through[tenant]
		if !ok {
			if !c.labels {
				return // the earliest of every tenant's is unknown
			}
			continue
		}
		if c.labels {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, unixSeconds(t), tenant)
		} else if all.IsZero() || t.Before(all) {
			all = t
		}
	}
	if !c.labels && !all.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, unixSeconds(all), query.AllTenants)
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
