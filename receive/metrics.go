package receive

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the endpoint's Prometheus series. Tenant labels are bounded:
// configured tenants, and "-" for calls without a known secret.
type metrics struct {
	requests *prometheus.CounterVec
	rejected *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	produce  prometheus.Histogram
	inFlight prometheus.Gauge
}

// latencyBuckets span a loopback acknowledgement (a millisecond) to the
// produce timeout.
var latencyBuckets = []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_receive_requests_total",
			Help: "Notification calls answered, by tenant (\"-\" without a known secret), method and HTTP status.",
		}, []string{"tenant", "method", "code"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_receive_rejected_total",
			Help: "Notification calls not stored, by reason: unauthorized, invalid, too_large, busy (max_concurrent reached), kafka (not acknowledged in time).",
		}, []string{"reason"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_receive_bytes_total",
			Help: "Bytes of record values acknowledged by Kafka, by tenant.",
		}, []string{"tenant"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fhirlake_receive_request_duration_seconds",
			Help:    "Time from a call's arrival to Kafka's acknowledgement of its record, for stored calls, by method.",
			Buckets: latencyBuckets,
		}, []string{"method"}),
		produce: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fhirlake_receive_produce_duration_seconds",
			Help:    "Time Kafka took to acknowledge (or fail) one record.",
			Buckets: latencyBuckets,
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fhirlake_receive_in_flight",
			Help: "Calls in progress (at most receive.max_concurrent).",
		}),
	}
	reg.MustRegister(m.requests, m.rejected, m.bytes, m.latency, m.produce, m.inFlight)
	return m
}
