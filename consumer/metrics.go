package consumer

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	records        *prometheus.CounterVec
	recordBytes    *prometheus.CounterVec
	events         *prometheus.CounterVec
	controls       *prometheus.CounterVec
	deadLetters    *prometheus.CounterVec
	flushes        *prometheus.CounterVec
	flushErrors    prometheus.Counter
	flushSeconds   prometheus.Histogram
	durableSeconds prometheus.Histogram
	commitSeconds  prometheus.Histogram
	buffered       prometheus.Gauge
	paused         prometheus.Gauge
	freshness      *prometheus.GaugeVec
	viewErrors     *prometheus.CounterVec
	lag            *prometheus.GaugeVec
	fresh          *freshness
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_consumer_records_total", Help: "Kafka records consumed.",
		}, []string{"topic"}),
		recordBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_consumer_bytes_total", Help: "Bytes of Kafka record values consumed.",
		}, []string{"topic"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_consumer_events_total", Help: "Resource changes decoded, by envelope format, resource type and operation.",
		}, []string{"format", "resource_type", "operation"}),
		controls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_consumer_control_messages_total", Help: "Notifications without changes (handshake, heartbeat, query-status, empty events).",
		}, []string{"type"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_consumer_dead_letters_total", Help: "Records sent to the dead-letter topic, by error class.",
		}, []string{"class"}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_consumer_flushes_total", Help: "Buffer flushes by trigger (rows, bytes, age, caught-up, memory, revoke, shutdown).",
		}, []string{"reason"}),
		flushErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fhirlake_consumer_flush_errors_total", Help: "Flush attempts that failed and will be retried.",
		}),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fhirlake_consumer_flush_duration_seconds", Help: "Time from flush start until every file is durable.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		durableSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fhirlake_consumer_durable_latency_seconds",
			Help:    "Per committed flush, from the Kafka timestamp of its oldest record to the commit: the longest any of its records waited to become durable.",
			Buckets: []float64{0.5, 1, 2, 3, 4, 5, 6, 7, 8, 10, 15, 20, 30, 60, 120, 300, 600},
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fhirlake_consumer_commit_duration_seconds", Help: "Time to commit offsets after a flush.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fhirlake_consumer_buffered_bytes", Help: "Bytes counted against the memory budget: polled records not yet decoded, and the Arrow memory of buffers not yet encoded.",
		}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fhirlake_consumer_paused_partitions", Help: "Partitions whose fetching is paused because buffers reached the memory budget.",
		}),
		freshness: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fhirlake_consumer_last_durable_timestamp_seconds", Help: "Newest lastUpdated of a resource made durable, per tenant (Unix seconds).",
		}, []string{"tenant"}),
		viewErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_consumer_view_errors_total", Help: "Resources a view could not evaluate (stored in the raw dataset only), by view; view=parse when the resource did not parse.",
		}, []string{"view"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fhirlake_consumer_lag_records", Help: "Records of each partition not yet committed by the group (refreshed every 10s).",
		}, []string{"topic", "partition"}),
		fresh: newFreshness(),
	}
	if reg != nil {
		reg.MustRegister(m.lag, m.fresh, m.viewErrors, m.records, m.recordBytes, m.events, m.controls, m.deadLetters, m.flushes,
			m.flushErrors, m.flushSeconds, m.durableSeconds, m.commitSeconds, m.buffered, m.paused, m.freshness)
	}
	return m
}
