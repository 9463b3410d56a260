package kafkaconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/oauth2"
)

// Error is a failure of the connection to Kafka that retrying cannot
// cure: the configuration or the cluster's security settings must change.
type Error struct {
	// Reason says what failed and where to look, for a person.
	Reason string
	// Err is the failure as the client reported it.
	Err error
}

func (e *Error) Error() string { return "kafka: " + e.Reason + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// Permanent returns err as an *Error when it is a failure that retrying
// cannot cure — credentials refused, access denied, a certificate not
// trusted, TLS refused by the broker, a token endpoint refusing the client
// — and nil otherwise (a broker down or restarting, a timeout, a
// rebalance). The clients retry the second kind on their own; the first
// they would retry forever.
func Permanent(err error) *Error {
	if err == nil {
		return nil
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	var reason string
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		reason = "authentication failed (check kafka.sasl and the secrets it names)"
	case errors.Is(err, kerr.UnsupportedSaslMechanism), errors.Is(err, kerr.IllegalSaslState):
		reason = "the broker does not take this SASL mechanism (kafka.sasl.mechanism)"
	case errors.Is(err, kerr.ClusterAuthorizationFailed), errors.Is(err, kerr.TopicAuthorizationFailed),
		errors.Is(err, kerr.GroupAuthorizationFailed), errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		reason = "access denied (the ACLs of fhirlake's principal)"
	case isUntrusted(err):
		reason = "TLS: the broker's certificate is not trusted (check kafka.tls.ca_file and kafka.tls.server_name)"
	case isRemoteAlert(err):
		reason = "TLS: the broker refused the connection (does it require a client certificate, kafka.tls.cert_file, signed by a CA it trusts?)"
	case isRecordHeader(err):
		reason = "TLS: the broker does not speak TLS on this port (kafka.tls.enabled, kafka.brokers)"
	case isRefusedByTokenEndpoint(err):
		reason = "the OAuth token endpoint refused the client (check kafka.sasl.oauth and the secrets it names)"
	default:
		return nil
	}
	return &Error{Reason: reason, Err: err}
}

func isUntrusted(err error) bool {
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return true
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return true
	}
	if _, ok := errors.AsType[x509.HostnameError](err); ok {
		return true
	}
	_, ok := errors.AsType[x509.CertificateInvalidError](err)
	return ok
}

// isRemoteAlert: the broker ended the handshake with a TLS alert (for
// instance bad_certificate or certificate_required when it wants a client
// certificate that was not sent or that it does not trust).
func isRemoteAlert(err error) bool {
	if _, ok := errors.AsType[tls.AlertError](err); ok {
		return true
	}
	oe, ok := errors.AsType[*net.OpError](err)
	return ok && oe.Op == "remote error"
}

func isRecordHeader(err error) bool {
	_, ok := errors.AsType[tls.RecordHeaderError](err)
	return ok
}

func isRefusedByTokenEndpoint(err error) bool {
	re, ok := errors.AsType[*oauth2.RetrieveError](err)
	if !ok || re.Response == nil {
		return false
	}
	switch re.Response.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		return true
	}
	return false
}

// CheckTimeout bounds Check.
const CheckTimeout = 15 * time.Second

// firstReadTries and firstReadPause: how often, and how far apart, Check
// asks again after the broker closed a new connection at once
// (kgo.ErrFirstReadEOF): a sign of TLS or SASL missing on one side, or of
// a broker shutting down; only the first lasts.
const (
	firstReadTries = 3
	firstReadPause = time.Second
)

// Check asks the cluster for its brokers, within CheckTimeout, and
// returns an *Error when the answer shows a failure that retrying cannot
// cure; commands call it before their work, so that they end at once,
// with one error, rather than retry forever. A cluster that cannot be
// reached is not such a failure (the broker may be starting): Check
// returns nil and the client's own retries and errors take over.
func Check(ctx context.Context, cl *kgo.Client) error {
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	for try := 1; ; try++ {
		err := cl.Ping(ctx)
		if err == nil {
			return nil
		}
		if p := Permanent(err); p != nil {
			return p
		}
		if _, ok := errors.AsType[*kgo.ErrFirstReadEOF](err); !ok {
			return nil
		}
		if try == firstReadTries {
			return &Error{Reason: "the broker closes every connection at once (is TLS or SASL configured on one side only?)", Err: err}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(firstReadPause):
		}
	}
}
