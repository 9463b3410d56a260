package web

import "github.com/prometheus/client_golang/prometheus"

// metrics are the API's own; the pool has its own too. Their tenant label
// is "*" for every tenant unless Options.TenantLabels (see Server.label).
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	rows     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_query_requests_total",
			Help: "API requests by tenant (\"*\" for all when tenant labels are off; \"-\" when the path names no configured tenant), route and HTTP status.",
		}, []string{"tenant", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fhirlake_query_duration_seconds",
			Help:    "Time to answer a query request, waiting, refresh and response included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .15, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"tenant"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_query_rows_total",
			Help: "Rows returned by query requests.",
		}, []string{"tenant"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.rows)
	}
	return m
}
