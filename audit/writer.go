package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Destinations of Options.Path other than a file.
const (
	Off    = "off"
	Stderr = "stderr"
	Stdout = "stdout"
)

// Options configure a Writer.
type Options struct {
	// Path is where records go: "off" nowhere, "stderr" (or "-") and
	// "stdout" the process's streams, anything else a file, created with
	// mode 0600 (and its directory 0700) if absent and appended to
	// (O_APPEND), so that processes sharing it never interleave lines.
	Path string
	// SQL is what a record keeps of the statement. Default: full.
	SQL SQLMode
	// Buffer bounds the records waiting for the writer's goroutine.
	// Default: 4096.
	Buffer int
	// Wait is how long Write waits for room in a full buffer before it
	// drops the record. Default: 1s.
	Wait time.Duration
}

// Batches the writer's goroutine writes at once: what waits when it wakes,
// up to these bounds.
const (
	maxBatchRecords = 256
	maxBatchBytes   = 1 << 20
)

// Writer writes the audit trail. A nil *Writer writes nothing, so that
// callers need not check whether auditing is on.
type Writer struct {
	opts    Options
	out     io.Writer
	file    *os.File // nil for the process's streams: nothing to sync or close
	records chan Record
	done    chan struct{}
	log     *slog.Logger
	metrics *metrics

	// mu is held for reading while a record is handed over and for writing
	// by Close, so that nothing is sent on the closed channel.
	mu     sync.RWMutex
	closed bool
}

// Open starts the writer of o.Path, nil when it is "off". Its metrics are
// registered with reg (nil: nowhere); drops and write errors go to log.
func Open(o Options, reg prometheus.Registerer, log *slog.Logger) (*Writer, error) {
	if o.SQL == "" {
		o.SQL = SQLFull
	}
	if _, err := ParseSQLMode(string(o.SQL)); err != nil {
		return nil, err
	}
	if o.Buffer <= 0 {
		o.Buffer = 4096
	}
	if o.Wait <= 0 {
		o.Wait = time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var out io.Writer
	var file *os.File
	switch o.Path {
	case Off:
		return nil, nil
	case "":
		return nil, errors.New("audit.path: empty; use off to write no audit records")
	case Stderr, "-":
		out = os.Stderr
	case Stdout:
		out = os.Stdout
	default:
		if err := os.MkdirAll(filepath.Dir(o.Path), 0o700); err != nil {
			return nil, fmt.Errorf("audit.path: %w", err)
		}
		f, err := os.OpenFile(o.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit.path: %w", err)
		}
		out, file = f, f
	}
	return start(o, out, file, reg, log), nil
}

// start runs a writer to out; file, when not nil, is out, synced after
// every batch and closed by Close.
func start(o Options, out io.Writer, file *os.File, reg prometheus.Registerer, log *slog.Logger) *Writer {
	w := &Writer{opts: o, out: out, file: file, records: make(chan Record, o.Buffer), done: make(chan struct{}),
		log: log, metrics: newMetrics(reg)}
	go w.run()
	return w
}

// Write hands r to the writer, filling in Audit and Time (when zero) and
// keeping of its SQL what Options.SQL says. It waits at most Options.Wait
// for room; a record that finds none is dropped, counted in
// fhirlake_audit_dropped_total and logged at error level.
func (w *Writer) Write(r Record) {
	if w == nil {
		return
	}
	r.Audit = Version
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Time = r.Time.UTC()
	w.opts.SQL.apply(&r)
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.drop(r, "closed")
		return
	}
	select {
	case w.records <- r:
		return
	default:
	}
	t := time.NewTimer(w.opts.Wait)
	defer t.Stop()
	select {
	case w.records <- r:
	case <-t.C:
		w.drop(r, "full")
	}
}

// drop counts and logs a record that will not be written, with what the
// log may hold of it: everything but the statement.
func (w *Writer) drop(r Record, reason string) {
	w.metrics.dropped.WithLabelValues(reason).Inc()
	w.log.Error("audit record dropped", "reason", reason, "kind", r.Kind, "tenant", r.Tenant, "key", r.Key,
		"request_id", r.RequestID, "status", r.Status, "time", r.Time, "sql_sha256", r.SQLSHA256)
}

// Close writes the records waiting, syncs and closes a file. Records
// written after it are dropped.
func (w *Writer) Close() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return nil
	}
	w.closed = true
	close(w.records)
	w.mu.Unlock()
	<-w.done
	if w.file == nil {
		return nil
	}
	return w.file.Close()
}

// run is the writer's goroutine: it writes what waits as one batch, each
// record a line, in a single write, then syncs a file. It ends when Close
// closes the channel and the records left are written.
func (w *Writer) run() {
	defer close(w.done)
	var buf bytes.Buffer
	for r := range w.records {
		buf.Reset()
		batch := []Record{r}
		w.encode(&buf, r)
	more:
		for len(batch) < maxBatchRecords && buf.Len() < maxBatchBytes {
			select {
			case r, ok := <-w.records:
				if !ok {
					break more
				}
				batch = append(batch, r)
				w.encode(&buf, r)
			default:
				break more
			}
		}
		w.flush(buf.Bytes(), batch)
	}
}

func (w *Writer) encode(buf *bytes.Buffer, r Record) {
	enc := json.NewEncoder(buf)
	// The SQL's < and > as they are: the trail is read as JSON, never as HTML.
	enc.SetEscapeHTML(false)
	_ = enc.Encode(r) // a Record has nothing json cannot encode
}

// flush writes one batch; a file is synced after it, so that a record is
// durable within one batch of being handed over.
func (w *Writer) flush(b []byte, batch []Record) {
	_, err := w.out.Write(b)
	if err == nil && w.file != nil {
		err = w.file.Sync()
	}
	if err != nil {
		w.log.Error("audit records could not be written", "path", w.opts.Path, "records", len(batch), "err", err)
		for _, r := range batch {
			w.drop(r, "write_error")
		}
		return
	}
	w.metrics.written.Add(float64(len(batch)))
}

type metrics struct {
	written prometheus.Counter
	dropped *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fhirlake_audit_records_total",
			Help: "Audit records written (and, for a file, synced).",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirlake_audit_dropped_total",
			Help: "Audit records lost, by reason: full (the writer fell behind past audit's wait), write_error (the destination refused them), closed (written during shutdown). Each is also logged at error level.",
		}, []string{"reason"}),
	}
	for _, r := range []string{"full", "write_error", "closed"} {
		m.dropped.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.written, m.dropped)
	}
	return m
}
