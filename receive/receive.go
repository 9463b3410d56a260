// Package receive is the HTTP endpoint FHIR servers call with their
// subscription notifications (rest-hooks). Each call is authenticated by a
// tenant's secret, checked by the notification decoder, and written to
// Kafka as one record carrying the tenant header; the server gets its 200
// only once Kafka has acknowledged the record, so nothing is acknowledged
// that is not durable. When Kafka cannot take it, the call gets 503 and
// the server retries.
//
// Routes:
//
//	POST   /notify              a notification Bundle (R4 Backport, R4B, R5), or a bare resource
//	PUT    /notify/{type}/{id}  a classic rest-hook create or update, the resource as body
//	DELETE /notify/{type}/{id}  a classic rest-hook delete (HAPI's subscription-send-delete-messages)
//	GET    /healthz, /readyz, /metrics
package receive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/notification"
)

// Secret is one tenant's secret, as the SHA-256 of the secret.
type Secret struct {
	Tenant string
	// SHA256 is the lowercase hex SHA-256 of the secret.
	SHA256 string
	// Name labels the secret in logs.
	Name string
}

// Options configure a Server.
type Options struct {
	// Topic receives every record.
	Topic string
	// TenantHeader is the record header naming the tenant (routing.header).
	TenantHeader string
	// SecretHeader is the request header carrying the secret.
	SecretHeader string
	Secrets      []Secret
	// MaxRequestBytes bounds a body (413 beyond).
	MaxRequestBytes int64
	// MaxConcurrent bounds the calls in progress (503 beyond).
	MaxConcurrent int
	// ProduceTimeout bounds the wait for Kafka's acknowledgement (503 beyond).
	ProduceTimeout time.Duration
	// Gatherer serves /metrics; nil serves the registry given to New.
	Gatherer prometheus.Gatherer
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Producer writes records and returns once Kafka has acknowledged them
// (or failed to): *kgo.Client.
type Producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
	Ping(ctx context.Context) error
}

// Server is the endpoint. It holds no state between calls beyond metrics.
type Server struct {
	opts    Options
	kafka   Producer
	secrets map[string]Secret // by digest
	slots   chan struct{}     // one per call in progress
	metrics *metrics
	gather  prometheus.Gatherer
	log     *slog.Logger
}

// New returns a Server producing with kafka. reg receives its metrics.
func New(kafka Producer, opts Options, reg *prometheus.Registry, log *slog.Logger) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, kafka: kafka, secrets: map[string]Secret{},
		slots: make(chan struct{}, opts.MaxConcurrent), metrics: newMetrics(reg), gather: opts.Gatherer, log: log}
	if s.gather == nil {
		s.gather = reg
	}
	for _, sec := range opts.Secrets {
		s.secrets[sec.SHA256] = sec
	}
	return s
}

// Handler serves the routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /notify", s.call(methodPost))
	mux.HandleFunc("PUT /notify/{type}/{id}", s.call(methodPut))
	mux.HandleFunc("DELETE /notify/{type}/{id}", s.call(methodDelete))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { answer(w, "ok\n") })
	mux.HandleFunc("GET /readyz", s.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		outcome(w, http.StatusNotFound, "not-found", "POST a notification to /notify, or PUT or DELETE /notify/{type}/{id}")
	})
	return mux
}

const (
	methodPost   = "POST"
	methodPut    = "PUT"
	methodDelete = "DELETE"
)

// ready answers 200 while Kafka answers a metadata request.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.kafka.Ping(ctx); err != nil {
		http.Error(w, "kafka unreachable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	answer(w, "ok\n")
}

// answer writes a response body. A client that went away before reading
// it is nothing to report: its call is stored or refused either way.
func answer(w io.Writer, body string) {
	_, _ = io.WriteString(w, body)
}

// call handles one notification call; method is the route's method.
func (s *Server) call(method string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := s.opts.Now()
		sw := &statusWriter{ResponseWriter: w}
		tenant := "-"
		defer func() {
			s.metrics.requests.WithLabelValues(tenant, method, strconv.Itoa(sw.status)).Inc()
		}()
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		default:
			s.metrics.rejected.WithLabelValues("busy").Inc()
			sw.Header().Set("Retry-After", "1")
			outcome(sw, http.StatusServiceUnavailable, "transient", fmt.Sprintf("%d calls in progress: retry", s.opts.MaxConcurrent))
			return
		}
		s.metrics.inFlight.Inc()
		defer s.metrics.inFlight.Dec()
		sec, ok := s.authenticate(r)
		if !ok {
			s.metrics.rejected.WithLabelValues("unauthorized").Inc()
			sw.Header().Set("WWW-Authenticate", `Bearer realm="fhirlake"`)
			outcome(sw, http.StatusUnauthorized, "login", "send the tenant's secret in "+s.opts.SecretHeader+" (or Authorization: Bearer)")
			return
		}
		tenant = sec.Tenant
		rec, status, msg := s.record(r, method, sec.Tenant, start)
		if rec == nil {
			s.metrics.rejected.WithLabelValues(rejectReason(status)).Inc()
			s.log.Warn("receive: call refused", "tenant", tenant, "secret", sec.Name, "method", method, "path", r.URL.Path, "status", status, "reason", msg)
			outcome(sw, status, issueCode(status), msg)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.opts.ProduceTimeout)
		defer cancel()
		produced := s.opts.Now()
		err := s.kafka.ProduceSync(ctx, rec).FirstErr()
		s.metrics.produce.Observe(s.opts.Now().Sub(produced).Seconds())
		if err != nil {
			status, msg := produceFailure(err)
			s.metrics.rejected.WithLabelValues(rejectReason(status)).Inc()
			s.log.Warn("receive: kafka did not take the call", "tenant", tenant, "topic", s.opts.Topic, "status", status, "err", err)
			if status == http.StatusServiceUnavailable {
				sw.Header().Set("Retry-After", "5")
			}
			outcome(sw, status, issueCode(status), msg)
			return
		}
		s.metrics.bytes.WithLabelValues(tenant).Add(float64(len(rec.Value)))
		s.metrics.latency.WithLabelValues(method).Observe(s.opts.Now().Sub(start).Seconds())
		s.log.Debug("receive: produced", "tenant", tenant, "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset)
		accepted(sw, method)
	}
}

// authenticate finds the secret of r: the secret header, else a bearer
// token.
func (s *Server) authenticate(r *http.Request) (Secret, bool) {
	presented := strings.TrimSpace(r.Header.Get(s.opts.SecretHeader))
	if presented == "" {
		if scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
			presented = strings.TrimSpace(token)
		}
	}
	if presented == "" {
		return Secret{}, false
	}
	// Looked up by digest, so lookup timing says nothing about the secret.
	sum := sha256.Sum256([]byte(presented))
	sec, ok := s.secrets[hex.EncodeToString(sum[:])]
	return sec, ok
}

// record reads the call into the record to produce, checked by the
// decoder; nil with a status and reason when the call is refused.
func (s *Server) record(r *http.Request, method, tenant string, received time.Time) (*kgo.Record, int, string) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, s.opts.MaxRequestBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", s.opts.MaxRequestBytes)
		}
		return nil, http.StatusBadRequest, "reading the body: " + err.Error()
	}
	var value []byte
	var headers []kgo.RecordHeader
	switch method {
	case methodPost:
		value = body
		// The few headers the decoder reads (a bare resource's interaction,
		// Medplum's deleted resource) travel with it; no other one does:
		// channel headers carry secrets.
		for _, name := range notification.InteractionHeaders {
			if v := r.Header.Get(name); v != "" {
				headers = append(headers, kgo.RecordHeader{Key: strings.ToLower(name), Value: []byte(v)})
			}
		}
	default:
		call := notification.RestHookCall{Method: method, ResourceType: r.PathValue("type"), ID: r.PathValue("id"),
			VersionID: versionOf(r.Header), Received: received}
		if method == methodPut {
			if len(strings.TrimSpace(string(body))) == 0 {
				return nil, http.StatusBadRequest, "PUT without a resource"
			}
			call.Resource = body
		}
		if value, err = notification.RestHookEnvelope(call); err != nil {
			return nil, http.StatusBadRequest, err.Error()
		}
	}
	hs := make([]notification.Header, len(headers))
	for i, h := range headers {
		hs[i] = notification.Header{Key: h.Key, Value: h.Value}
	}
	n, err := notification.DecodeRecord(value, hs)
	if err != nil {
		if de, ok := notification.IsDecodeError(err); ok && de.Class == notification.ClassOversized {
			return nil, http.StatusRequestEntityTooLarge, err.Error()
		}
		return nil, http.StatusBadRequest, "not a notification fhirlake can store: " + err.Error()
	}
	headers = append(headers, kgo.RecordHeader{Key: s.opts.TenantHeader, Value: []byte(tenant)})
	return &kgo.Record{Topic: s.opts.Topic, Key: recordKey(n), Value: value, Headers: headers}, 0, ""
}

// versionOf is the version an If-Match or ETag header names (W/"3").
func versionOf(h http.Header) string {
	for _, name := range []string{"If-Match", "ETag"} {
		v := strings.TrimSpace(h.Get(name))
		v = strings.Trim(strings.TrimPrefix(v, "W/"), `"`)
		if v != "" {
			return v
		}
	}
	return ""
}

// recordKey keeps one resource's changes in one partition, in order: the
// resource of a one-event notification, else the subscription.
func recordKey(n *notification.Notification) []byte {
	if len(n.Events) == 1 {
		return []byte(n.Events[0].ResourceType + "/" + n.Events[0].ID)
	}
	if n.Subscription != "" {
		return []byte(n.Subscription)
	}
	return nil
}

// produceFailure is the answer to a call whose record Kafka did not take:
// 413 for a record the broker finds too large (retrying cannot help), else
// 503, so that the server retries later.
func produceFailure(err error) (int, string) {
	if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) {
		return http.StatusRequestEntityTooLarge, "Kafka refuses a record this large: " + err.Error()
	}
	return http.StatusServiceUnavailable, "Kafka did not acknowledge the notification; retry: " + err.Error()
}

// accepted answers a stored call: 200 with a FHIR body, which HAPI needs
// (it retries a call whose answer it cannot parse), a Bundle for a
// notification Bundle (HAPI posts it as a transaction).
func accepted(w http.ResponseWriter, method string) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(http.StatusOK)
	if method == methodPost {
		answer(w, `{"resourceType":"Bundle","type":"transaction-response","entry":[]}`+"\n")
		return
	}
	answer(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational","diagnostics":"stored"}]}`+"\n")
}

// outcome answers with an OperationOutcome of one error issue.
func outcome(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"resourceType": "OperationOutcome",
		"issue": []map[string]string{{"severity": "error", "code": code, "diagnostics": msg}}})
	answer(w, string(b)+"\n")
}

// issueCode is the OperationOutcome issue code of a refusal.
func issueCode(status int) string {
	switch status {
	case http.StatusRequestEntityTooLarge:
		return "too-costly"
	case http.StatusServiceUnavailable:
		return "transient"
	case http.StatusUnauthorized:
		return "login"
	}
	return "invalid"
}

// rejectReason labels a refusal in metrics.
func rejectReason(status int) string {
	switch status {
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusServiceUnavailable:
		return "kafka"
	}
	return "invalid"
}

// statusWriter records the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}
