package kafkaconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"fhirlake/config"
	"fhirlake/internal/testcert"
)

// pki is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written to files as a user would have them.
type pki struct {
	ca                 *testcert.CA
	server             tls.Certificate
	caFile             string
	clientCert, client string // files: the client's certificate and key
}

func newPKI(t *testing.T, name string) pki {
	t.Helper()
	ca, err := testcert.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Server("broker", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(srv.Cert, srv.Key)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := ca.Client("fhirlake")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := pki{ca: ca, server: cert, caFile: filepath.Join(dir, "ca.pem"), clientCert: filepath.Join(dir, "client.pem"), client: filepath.Join(dir, "client-key.pem")}
	write(t, p.caFile, ca.CertPEM())
	write(t, p.clientCert, cl.Cert)
	write(t, p.client, cl.Key)
	return p
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// cluster starts an in-process cluster with opts and returns its address.
func cluster(t *testing.T, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, "t")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// connect builds a client from k as every command does, checks it, and
// lists the topics through it.
func connect(t *testing.T, k config.Kafka) error {
	t.Helper()
	opts, err := Options(context.Background(), k)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(opts, kgo.RequestRetries(1))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := Check(context.Background(), cl); err != nil {
		return err
	}
	topics, err := kadm.NewClient(cl).ListTopics(context.Background())
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	if !topics.Has("t") {
		return fmt.Errorf("topic t not listed: %v", topics.Names())
	}
	return nil
}

func kafkaConfig(brokers []string) config.Kafka {
	k := config.Default().Kafka
	k.Brokers = brokers
	return k
}

// TestSASLOverTLS: each password mechanism over TLS against a cluster with
// that user; an untrusted CA ends the check with the reason.
func TestSASLOverTLS(t *testing.T) {
	p := newPKI(t, "test CA")
	for _, m := range []struct{ name, kafka string }{
		{config.SASLPlain, "PLAIN"}, {config.SASLScramSHA256, "SCRAM-SHA-256"}, {config.SASLScramSHA512, "SCRAM-SHA-512"},
	} {
		t.Run(m.name, func(t *testing.T) {
			brokers := cluster(t, kfake.EnableSASL(), kfake.Superuser(m.kafka, "fhirlake", "right"),
				kfake.TLS(&tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}))
			t.Setenv("KAFKA_USER", "fhirlake")
			t.Setenv("KAFKA_PASSWORD", "right")
			k := kafkaConfig(brokers)
			k.TLS = config.KafkaTLS{Enabled: true, CAFile: p.caFile}
			k.SASL = config.KafkaSASL{Mechanism: m.name, UsernameEnv: "KAFKA_USER", PasswordEnv: "KAFKA_PASSWORD"}
			if err := connect(t, k); err != nil {
				t.Fatalf("right password: %v", err)
			}

			// (kfake closes the connection on a wrong password where a
			// broker answers SASL_AUTHENTICATION_FAILED: that case is
			// tested against the real broker,
			// TestIntegrationKafkaSecurityRefused.)
			other := newPKI(t, "another CA")
			k.TLS.CAFile = other.caFile
			wantPermanent(t, connect(t, k), "certificate is not trusted")
		})
	}
}

// TestPlaintextToTLS: a client without TLS to a TLS listener is told so
// once the broker has closed its connections a few times.
func TestPlaintextToTLS(t *testing.T) {
	p := newPKI(t, "test CA")
	brokers := cluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}))
	wantPermanent(t, connect(t, kafkaConfig(brokers)), "closes every connection at once")
}

func wantPermanent(t *testing.T, err error, reason string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Error(), reason) {
		t.Fatalf("got %v, want a permanent error saying %q", err, reason)
	}
}

// TestMutualTLS: a cluster that requires a client certificate takes ours
// and refuses a client without one, or with one from another CA.
func TestMutualTLS(t *testing.T) {
	p := newPKI(t, "test CA")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.ca.CertPEM())
	brokers := cluster(t, kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12,
	}))
	k := kafkaConfig(brokers)
	k.TLS = config.KafkaTLS{Enabled: true, CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.client}
	if err := connect(t, k); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	k.TLS.CertFile, k.TLS.KeyFile = "", ""
	wantPermanent(t, connect(t, k), "the broker refused the connection")

	stranger := newPKI(t, "a stranger's CA")
	k.TLS.CertFile, k.TLS.KeyFile = stranger.clientCert, stranger.client
	wantPermanent(t, connect(t, k), "the broker refused the connection")
}

// TestServerName: a certificate that does not name the address dialled is
// refused, unless server_name gives the name it carries.
func TestServerName(t *testing.T) {
	ca, err := testcert.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Server("broker", "kafka.internal.example")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(srv.Cert, srv.Key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	write(t, caFile, ca.CertPEM())
	brokers := cluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	k := kafkaConfig(brokers)
	k.TLS = config.KafkaTLS{Enabled: true, CAFile: caFile}
	wantPermanent(t, connect(t, k), "certificate is not trusted")
	k.TLS.ServerName = "kafka.internal.example"
	if err := connect(t, k); err != nil {
		t.Fatalf("with server_name: %v", err)
	}
}

// TestOptionsErrors: what Options cannot use is named before any
// connection.
func TestOptionsErrors(t *testing.T) {
	p := newPKI(t, "test CA")
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	write(t, notPEM, []byte("hello"))
	empty := filepath.Join(dir, "empty-token")
	write(t, empty, []byte("\n"))
	t.Setenv("SET", "x")
	os.Unsetenv("UNSET_SECRET")
	for name, c := range map[string]struct {
		tls  config.KafkaTLS
		sasl config.KafkaSASL
		want string
	}{
		"missing CA file":   {tls: config.KafkaTLS{Enabled: true, CAFile: filepath.Join(dir, "nope.pem")}, want: "kafka.tls.ca_file: open"},
		"CA file not PEM":   {tls: config.KafkaTLS{Enabled: true, CAFile: notPEM}, want: "holds no PEM certificate"},
		"key of another":    {tls: config.KafkaTLS{Enabled: true, CertFile: p.clientCert, KeyFile: p.caFile}, want: "kafka.tls.cert_file, key_file"},
		"missing password":  {sasl: config.KafkaSASL{Mechanism: config.SASLScramSHA512, UsernameEnv: "SET", PasswordEnv: "UNSET_SECRET"}, want: "environment variable UNSET_SECRET is not set"},
		"empty token file":  {sasl: config.KafkaSASL{Mechanism: config.SASLOAuthBearer, TokenFile: empty}, want: "is empty"},
		"missing client id": {sasl: config.KafkaSASL{Mechanism: config.SASLOAuthBearer, OAuth: config.KafkaOAuth{TokenURL: "https://idp", ClientIDEnv: "UNSET_SECRET", ClientSecretEnv: "SET"}}, want: "oauth.client_id_env: environment variable UNSET_SECRET"},
		"unknown mechanism": {sasl: config.KafkaSASL{Mechanism: "gssapi"}, want: `"gssapi" is not supported`},
	} {
		t.Run(name, func(t *testing.T) {
			k := kafkaConfig([]string{"127.0.0.1:1"})
			k.TLS, k.SASL = c.tls, c.sasl
			_, err := Options(context.Background(), k)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}

// initial is the first message a mechanism sends.
func initial(t *testing.T, k config.Kafka, host string) (string, error) {
	t.Helper()
	m, err := mechanism(context.Background(), k.SASL)
	if err != nil {
		t.Fatal(err)
	}
	_, msg, err := m.Authenticate(context.Background(), host)
	return string(msg), err
}

// TestOAuthClientCredentials: the token comes from the endpoint with the
// client's id, secret and scopes, is kept for later connections, and a
// refusal of the endpoint is permanent.
func TestOAuthClientCredentials(t *testing.T) {
	var requests atomic.Int32
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		id, secret, _ := r.BasicAuth()
		if err := r.ParseForm(); err != nil || r.Form.Get("grant_type") != "client_credentials" || id != "fhirlake" || secret != "s3cret" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "tok-" + r.Form.Get("scope"), "token_type": "Bearer", "expires_in": 3600})
	}))
	defer idp.Close()
	t.Setenv("OAUTH_ID", "fhirlake")
	t.Setenv("OAUTH_SECRET", "s3cret")
	k := kafkaConfig(nil)
	k.SASL = config.KafkaSASL{Mechanism: config.SASLOAuthBearer, OAuth: config.KafkaOAuth{
		TokenURL: idp.URL, ClientIDEnv: "OAUTH_ID", ClientSecretEnv: "OAUTH_SECRET", Scopes: []string{"kafka"},
	}}
	m, err := mechanism(context.Background(), k.SASL)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_, msg, err := m.Authenticate(context.Background(), "127.0.0.1:9092")
		if err != nil || !strings.Contains(string(msg), "auth=Bearer tok-kafka\x01") {
			t.Fatalf("got %q, %v; want the endpoint's token", msg, err)
		}
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("the endpoint was asked %d times for 3 connections, want once", n)
	}

	t.Setenv("OAUTH_SECRET", "wrong")
	if _, err = initial(t, k, "127.0.0.1:9092"); err == nil {
		t.Fatal("a refused client got a token")
	}
	if p := Permanent(err); p == nil || !strings.Contains(p.Error(), "token endpoint refused the client") {
		t.Fatalf("got %v, want a permanent error", err)
	}
}

// TestOAuthTokenFile: the token is read for every connection, so that a
// renewed file is used.
func TestOAuthTokenFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	write(t, f, []byte("first\n"))
	k := kafkaConfig(nil)
	k.SASL = config.KafkaSASL{Mechanism: config.SASLOAuthBearer, TokenFile: f}
	m, err := mechanism(context.Background(), k.SASL)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"first", "second"} {
		write(t, f, []byte(tok+"\n"))
		_, msg, err := m.Authenticate(context.Background(), "127.0.0.1:9092")
		if err != nil || !strings.Contains(string(msg), "auth=Bearer "+tok+"\x01") {
			t.Fatalf("got %q, %v; want token %s", msg, err, tok)
		}
	}
}

// TestMSKIAM: the request is signed with the default chain's credentials
// for the region of the MSK host name.
func TestMSKIAM(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDFHIRLAKETEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_SESSION_TOKEN", "session")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	k := kafkaConfig(nil)
	k.TLS.Enabled = true
	k.SASL = config.KafkaSASL{Mechanism: config.SASLAWSMSKIAM}
	msg, err := initial(t, k, "b-1.lake.abc123.c2.kafka.eu-west-1.amazonaws.com:9098")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(msg), &m); err != nil {
		t.Fatalf("%q: %v", msg, err)
	}
	if cred := m["x-amz-credential"]; !strings.HasPrefix(cred, "AKIDFHIRLAKETEST/") || !strings.Contains(cred, "/eu-west-1/kafka-cluster/") || m["x-amz-security-token"] != "session" {
		t.Fatalf("signed as %q (token %q), want the environment's key for eu-west-1", cred, m["x-amz-security-token"])
	}
}

// TestPermanent: what retrying cannot cure, and what it can.
func TestPermanent(t *testing.T) {
	for _, c := range []struct {
		err       error
		permanent bool
	}{
		{fmt.Errorf("wrapped: %w", kerr.SaslAuthenticationFailed), true},
		{kerr.TopicAuthorizationFailed, true},
		{kerr.GroupAuthorizationFailed, true},
		{x509.UnknownAuthorityError{}, true},
		{&tls.CertificateVerificationError{Err: errors.New("x")}, true},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, true},
		{kerr.NotCoordinator, false},
		{kerr.RebalanceInProgress, false},
		{context.DeadlineExceeded, false},
		{errors.New("unable to dial: dial tcp 127.0.0.1:1: connect: connection refused"), false},
		{nil, false},
	} {
		if got := Permanent(c.err) != nil; got != c.permanent {
			t.Errorf("Permanent(%v): got %v, want %v", c.err, got, c.permanent)
		}
	}
}
