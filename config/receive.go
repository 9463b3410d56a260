package config

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Receive configures `fhirlake receive`: the HTTP endpoint FHIR servers
// call with their subscription notifications (rest-hooks), written to
// Kafka for the consumer.
type Receive struct {
	// Listen is host:port. Default: 127.0.0.1:8090.
	Listen string `yaml:"listen" env:"LISTEN"`
	// TLS is HTTPS, as serve.tls: certificate and key read again when they
	// change, optional client certificates. Default: plain HTTP.
	TLS ServeTLS `yaml:"tls" envPrefix:"TLS_"`
	// Topic receives the notifications. Default: the first of kafka.topics.
	Topic string `yaml:"topic" env:"TOPIC"`
	// SecretHeader is the request header carrying a tenant's secret, set by
	// the Subscription (channel.header "<SecretHeader>: <secret>").
	// "Authorization: Bearer <secret>" is accepted too. Default:
	// X-Fhirlake-Secret.
	SecretHeader string `yaml:"secret_header" env:"SECRET_HEADER"`
	// Secrets open one tenant each. Only the SHA-256 of a secret is stored:
	// `fhirlake serve hash-key` prints it. The tenant of a call is the
	// tenant of its secret.
	Secrets []ReceiveSecret `yaml:"secrets"`
	// MaxRequestBytes bounds a request body; larger ones get 413. At most
	// 16MiB, the largest record the consumer decodes. Default: 16MiB.
	MaxRequestBytes ByteSize `yaml:"max_request_bytes" env:"MAX_REQUEST_BYTES"`
	// MaxConcurrent bounds the calls handled at once (each holds its body
	// until Kafka acknowledges it); beyond it a call gets 503 with
	// Retry-After at once. Default: 64.
	MaxConcurrent int `yaml:"max_concurrent" env:"MAX_CONCURRENT"`
	// ProduceTimeout bounds the wait for Kafka's acknowledgement of one
	// call; past it (Kafka down or unreachable) the call gets 503 and the
	// server retries. Default: 10s.
	ProduceTimeout time.Duration `yaml:"produce_timeout" env:"PRODUCE_TIMEOUT"`
}

// ReceiveSecret is one tenant's rest-hook secret, stored as its SHA-256.
type ReceiveSecret struct {
	// Tenant is the tenant whose lake the calls with this secret feed.
	Tenant string `yaml:"tenant"`
	// SecretSHA256 is the lowercase hex SHA-256 of the secret.
	SecretSHA256 string `yaml:"secret_sha256"`
	// Name labels the secret in logs (never the secret itself). Optional.
	Name string `yaml:"name"`
}

// MaxReceiveBytes is the largest max_request_bytes: the consumer's record
// limit (notification.MaxRecordBytes), less room for the envelope.
const MaxReceiveBytes = 16<<20 - 4<<10

// DefaultReceive returns the defaults documented on Receive.
func DefaultReceive() Receive {
	return Receive{
		Listen:          "127.0.0.1:8090",
		SecretHeader:    "X-Fhirlake-Secret",
		MaxRequestBytes: MaxReceiveBytes,
		MaxConcurrent:   64,
		ProduceTimeout:  10 * time.Second,
	}
}

// WithDefaults fills every unset field with its default; the topic
// defaults to the first topic the consumer reads.
func (r Receive) WithDefaults(k Kafka) Receive {
	d := DefaultReceive()
	if r.Listen == "" {
		r.Listen = d.Listen
	}
	if r.Topic == "" && len(k.Topics) > 0 {
		r.Topic = k.Topics[0]
	}
	if r.SecretHeader == "" {
		r.SecretHeader = d.SecretHeader
	}
	if r.MaxRequestBytes == 0 {
		r.MaxRequestBytes = d.MaxRequestBytes
	}
	if r.MaxConcurrent == 0 {
		r.MaxConcurrent = d.MaxConcurrent
	}
	if r.ProduceTimeout == 0 {
		r.ProduceTimeout = d.ProduceTimeout
	}
	if r.TLS.MinVersion == "" {
		r.TLS.MinVersion = "1.2"
	}
	return r
}

// Validate reports every problem with the section at once, each naming its
// key. tenants are the configured tenants: a secret must name one of them.
func (r Receive) Validate(tenants []Tenant) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("receive."+format, args...)) }
	if r.Listen == "" {
		bad("listen: required")
	}
	if r.Topic == "" {
		bad("topic: required (or list kafka.topics)")
	}
	switch {
	case r.SecretHeader == "":
		bad("secret_header: required")
	case !validHeaderName(r.SecretHeader):
		bad("secret_header: %q is not an HTTP header name", r.SecretHeader)
	}
	if r.MaxRequestBytes < 1<<10 || r.MaxRequestBytes > MaxReceiveBytes {
		bad("max_request_bytes: must be between 1KiB and %s, got %s", ByteSize(MaxReceiveBytes), r.MaxRequestBytes)
	}
	if r.MaxConcurrent < 1 {
		bad("max_concurrent: must be positive, got %d", r.MaxConcurrent)
	}
	if r.ProduceTimeout < 100*time.Millisecond {
		bad("produce_timeout: must be at least 100ms, got %s", r.ProduceTimeout)
	}
	r.TLS.validate(bad)
	if len(r.Secrets) == 0 {
		bad("secrets: none configured: no call could be accepted (`fhirlake serve hash-key --generate` makes one)")
	}
	secrets := make([]tenantHash, len(r.Secrets))
	for i, sec := range r.Secrets {
		secrets[i] = tenantHash{sec.Tenant, sec.SecretSHA256}
	}
	validateTenantHashes(bad, tenants, "secrets", "secret_sha256", "secret", secrets)
	return errors.Join(errs...)
}

// validHeaderName reports whether s is an HTTP field name (RFC 9110 token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		switch c {
		case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
			continue
		}
		return false
	}
	return http.CanonicalHeaderKey(s) != ""
}
