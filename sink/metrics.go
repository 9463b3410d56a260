package sink

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the sink; registered on the Registerer given to NewWriter.
type Metrics struct {
	files         *prometheus.CounterVec
	rows          *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	storeErrors   *prometheus.CounterVec
	uploadSeconds *prometheus.HistogramVec
	fileSize      *prometheus.HistogramVec
}

// NewMetrics creates and registers the sink metrics; reg may be nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		files: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_sink_files_written_total", Help: "Parquet files made durable in a tenant store.",
		}, []string{"tenant", "view"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_sink_rows_written_total", Help: "Rows in durable Parquet files.",
		}, []string{"tenant", "view"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_sink_bytes_written_total", Help: "Bytes of durable Parquet files.",
		}, []string{"tenant", "view"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_sink_store_errors_total", Help: "Failed store writes by class (access_denied, tls_untrusted, canceled, other).",
		}, []string{"tenant", "class"}),
		uploadSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fhirlake_sink_upload_duration_seconds", Help: "Time to make one file durable in its store.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"tenant"}),
		fileSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fhirlake_sink_file_size_bytes", Help: "Size distribution of written Parquet files.",
			Buckets: prometheus.ExponentialBuckets(1<<10, 4, 10),
		}, []string{"view"}),
	}
	if reg != nil {
		reg.MustRegister(m.files, m.rows, m.bytes, m.storeErrors, m.uploadSeconds, m.fileSize)
	}
	return m
}
