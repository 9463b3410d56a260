package audit

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// stalled is a destination that blocks its first write until released, as
// a full disk or a stuck pipe does.
type stalled struct {
	entered, release chan struct{}
	once             sync.Once
	mu               sync.Mutex
	b                bytes.Buffer
}

func (s *stalled) Write(p []byte) (int, error) {
	s.once.Do(func() { close(s.entered); <-s.release })
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// TestAFullBufferDropsVisibly: while the destination stalls, records wait
// in the bounded buffer; one that finds it full is dropped after the wait,
// counted, and logged with what identifies it. The others are written once
// the destination moves again, in order.
func TestAFullBufferDropsVisibly(t *testing.T) {
	out := &stalled{entered: make(chan struct{}), release: make(chan struct{})}
	var log bytes.Buffer
	reg := prometheus.NewRegistry()
	w := start(Options{SQL: SQLFull, Buffer: 1, Wait: 10 * time.Millisecond}, out, nil, reg, slog.New(slog.NewJSONHandler(&log, nil)))
	w.Write(Record{Kind: KindQuery, Tenant: "acme", RequestID: "r1"})
	<-out.entered // r1 is being written
	w.Write(Record{Kind: KindQuery, Tenant: "acme", RequestID: "r2"})
	w.Write(Record{Kind: KindQuery, Tenant: "acme", RequestID: "r3", SQL: "SELECT 'secret'"})
	if got := testutil.ToFloat64(w.metrics.dropped.WithLabelValues("full")); got != 1 {
		t.Fatalf("dropped: got %v, want 1", got)
	}
	if !strings.Contains(log.String(), `"msg":"audit record dropped"`) || !strings.Contains(log.String(), `"request_id":"r3"`) ||
		strings.Contains(log.String(), "secret") {
		t.Errorf("log: got %s, want the dropped record's id and not its SQL", log.String())
	}
	close(out.release)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Write(Record{Kind: KindQuery, Tenant: "acme", RequestID: "r4"})
	if got := testutil.ToFloat64(w.metrics.dropped.WithLabelValues("closed")); got != 1 {
		t.Errorf("written after Close: got %v dropped, want 1", got)
	}
	var ids []string
	for line := range strings.Lines(out.b.String()) {
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		ids = append(ids, r.RequestID)
	}
	if strings.Join(ids, ",") != "r1,r2" {
		t.Errorf("written: got %v, want r1,r2", ids)
	}
	if got := testutil.ToFloat64(w.metrics.written); got != 2 {
		t.Errorf("written metric: got %v, want 2", got)
	}
}

func TestOpen(t *testing.T) {
	if w, err := Open(Options{Path: Off}, nil, nil); w != nil || err != nil {
		t.Errorf("off: got %v, %v; want no writer", w, err)
	}
	w, err := Open(Options{Path: ""}, nil, nil)
	if w != nil || err == nil || !strings.Contains(err.Error(), "use off") {
		t.Errorf("empty: got %v, %v; want an error naming off", w, err)
	}
	if _, err := Open(Options{Path: Off, SQL: "hash"}, nil, nil); err == nil || !strings.Contains(err.Error(), "audit.sql") {
		t.Errorf("bad sql mode: got %v", err)
	}
	var nilWriter *Writer
	nilWriter.Write(Record{}) // a nil writer writes nothing
	if err := nilWriter.Close(); err != nil {
		t.Error(err)
	}
}
