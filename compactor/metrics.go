package compactor

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the compactor's Prometheus series, per tenant.
type Metrics struct {
	duration    *prometheus.HistogramVec
	modelRows   *prometheus.GaugeVec
	failedTests *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	halted      *prometheus.GaugeVec
	// The tenant's lease (lease.go).
	leaseHeld, leaseLost, leaseTakeovers *prometheus.CounterVec
}

// NewMetrics registers the compactor's series with reg; nil registers nowhere.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fhirlake_compactor_duration_seconds",
			Help:    "Duration of a tenant's compaction run, planning to publication, failed runs included.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200},
		}, []string{"tenant"}),
		modelRows: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fhirlake_compactor_model_rows",
			Help: "Rows of each table of the tenant's current batch snapshot; of a table merged on read, its base's (manifest rows).",
		}, []string{"tenant", "model"}),
		failedTests: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fhirlake_compactor_failed_tests",
			Help: "dbt tests that failed in the tenant's last run; any blocks publication.",
		}, []string{"tenant"}),
		lastSuccess: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fhirlake_compactor_last_success_timestamp_seconds",
			Help: "When the tenant's batch snapshot was last brought up to date (published, or found current).",
		}, []string{"tenant"}),
		halted: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fhirlake_compactor_halted",
			Help: "1 after a failed run of the tenant until the next success: its previous snapshot stays current.",
		}, []string{"tenant"}),
		leaseHeld: f.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_compactor_lease_held_total",
			Help: "Runs of the tenant that did not start because another compactor held its lease.",
		}, []string{"tenant"}),
		leaseLost: f.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_compactor_lease_lost_total",
			Help: "Runs of the tenant stopped before publishing because their lease lapsed or was taken over.",
		}, []string{"tenant"}),
		leaseTakeovers: f.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_compactor_lease_takeovers_total",
			Help: "Expired leases of the tenant taken over: a compactor died or stalled while holding it.",
		}, []string{"tenant"}),
	}
}
