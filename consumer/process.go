package consumer

import (
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/notification"
	"fhirlake/rows"
)

// decoding is a worker's per-record scratch and its counters, looked up
// once rather than per record.
type decoding struct {
	// headers is the decoder's view of the record being processed, reused.
	headers []notification.Header
	// decoder parses each resource once, for the decoder and the views;
	// its trees are reused from record to record.
	decoder notification.Decoder
	// Counters of the partition's topic, and of events by label values.
	records, bytes prometheus.Counter
	events         map[eventLabels]prometheus.Counter
}

type eventLabels struct {
	format    notification.Format
	typ       string
	operation notification.Operation
}

func (w *worker) eventCounter(f notification.Format, typ string, op notification.Operation) prometheus.Counter {
	k := eventLabels{f, typ, op}
	m, ok := w.dec.events[k]
	if !ok {
		// typ points into a record (DecodeRecord): the map and the metric
		// keep a copy.
		k.typ = strings.Clone(typ)
		m = w.c.m.events.WithLabelValues(string(f), k.typ, string(op))
		w.dec.events[k] = m
	}
	return m
}

// process decodes one record into the filling buffer (package
// notification decodes, the router names the tenant, package rows builds
// the rows), or dead-letters it. The buffer's offset range is take's.
func (w *worker) process(r *kgo.Record) {
	c := w.c
	w.dec.records.Inc()
	w.dec.bytes.Add(float64(len(r.Value)))

	w.dec.headers = decodeHeaders(w.dec.headers[:0], r.Headers)
	n, err := w.dec.decoder.DecodeRecord(r.Value, w.dec.headers)
	if err != nil {
		class, reason := notification.ClassInvalid, err.Error()
		if de, ok := notification.IsDecodeError(err); ok {
			class, reason = de.Class, de.Reason
		}
		w.deadLetter(r, class, reason, c.router.Claimed(r))
		return
	}
	tenant, err := c.router.Resolve(r, n)
	if err != nil {
		var re *RouteError
		errors.As(err, &re)
		w.deadLetter(r, re.Class, re.Reason, re.Claimed)
		return
	}
	if n.NeedsFetch() {
		if c.fetcher == nil {
			w.deadLetter(r, notification.ClassIDOnly, "id-only payload and no FHIR server is configured for the tenant", tenant)
			return
		}
		if err := c.fetcher.Resolve(w.ctx, tenant, n); err != nil {
			var fe *notification.FetchError
			if errors.As(err, &fe) {
				w.deadLetter(r, fe.Class, fe.Reason, tenant)
				return
			}
			// The worker is stopping: the record replays from the last commit.
			c.log.Warn("fetch interrupted; record will replay", "tenant", tenant, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			return
		}
	}
	if n.Control() {
		t := n.Type
		if n.Empty > 0 {
			t = "empty-event"
		}
		c.m.controls.WithLabelValues(strings.Clone(t)).Inc()
		c.log.Debug("control message", "tenant", tenant, "type", n.Type, "status", n.Status, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset)
		return
	}
	ingest := time.Now()
	at := rows.Coordinates{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
	for i := range n.Events {
		ev := &n.Events[i]
		if c.erasures.erased(tenant, ev, at) {
			continue
		}
		w.filling.buf.Add(tenant, ev, at, ingest)
		w.eventCounter(n.Format, ev.ResourceType, ev.Operation).Inc()
	}
}

// viewError counts and logs a resource a view could not evaluate. The raw
// row is stored whatever happens, so nothing is lost: the batch layer can
// re-derive the row.
func (w *worker) viewError(tenant, view string, ev *notification.Event, at rows.Coordinates, err error) {
	w.c.m.viewErrors.WithLabelValues(view).Inc()
	w.c.log.Warn("resource not flattened", "tenant", tenant, "view", view, "resource", ev.ResourceType+"/"+ev.ID, "topic", at.Topic, "partition", at.Partition, "offset", at.Offset, "err", err)
}

// decodeHeaders appends a record's headers to dst as the decoder takes them;
// keys and values are not copied.
func decodeHeaders(dst []notification.Header, hs []kgo.RecordHeader) []notification.Header {
	for _, h := range hs {
		dst = append(dst, notification.Header{Key: h.Key, Value: h.Value})
	}
	return dst
}
