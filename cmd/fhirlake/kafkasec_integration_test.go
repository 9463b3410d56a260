//go:build integration

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fhirlake/consumer"
	"fhirlake/internal/testcert"
)

// securedStack is the local stack's secured Kafka listeners
// (deploy/local/stack env): SASL_SSL with a SCRAM user, and SSL requiring
// a client certificate, both signed by the stack's CA.
type securedStack struct {
	saslSSL, ssl        string
	ca, clientCert, key string
	user, password      string
	plain               stack
}

func needSecuredStack(t *testing.T) securedStack {
	t.Helper()
	s := securedStack{
		saslSSL: os.Getenv("FHIRLAKE_STACK_KAFKA_SASL_SSL"), ssl: os.Getenv("FHIRLAKE_STACK_KAFKA_SSL"),
		ca: os.Getenv("FHIRLAKE_STACK_KAFKA_CA"), clientCert: os.Getenv("FHIRLAKE_STACK_KAFKA_CLIENT_CERT"), key: os.Getenv("FHIRLAKE_STACK_KAFKA_CLIENT_KEY"),
		user: os.Getenv("FHIRLAKE_STACK_KAFKA_USER"), password: os.Getenv("FHIRLAKE_STACK_KAFKA_PASSWORD"),
		plain: needStack(t),
	}
	if s.saslSSL == "" || s.ssl == "" || s.ca == "" || s.password == "" {
		t.Fatal(`the local stack's secured Kafka listeners are not configured: eval "$(deploy/local/stack env)" after "deploy/local/stack up"`)
	}
	return s
}

// scram is the kafka section of SCRAM-SHA-512 over TLS as user, the
// password taken from $FHIRLAKE_IT_KAFKA_PASSWORD.
func (s securedStack) scram(ca string) string {
	return fmt.Sprintf("kafka:\n  tls: {enabled: true, ca_file: %q}\n  sasl: {mechanism: scram-sha-512, username_env: FHIRLAKE_STACK_KAFKA_USER, password_env: FHIRLAKE_IT_KAFKA_PASSWORD}\n", ca)
}

// mutual is the kafka section of TLS with a client certificate.
func (s securedStack) mutual(ca, cert, key string) string {
	if cert == "" {
		return fmt.Sprintf("kafka:\n  tls: {enabled: true, ca_file: %q}\n", ca)
	}
	return fmt.Sprintf("kafka:\n  tls: {enabled: true, ca_file: %q, cert_file: %q, key_file: %q}\n", ca, cert, key)
}

// TestIntegrationKafkaSecurity: topic creation, generate, consume with its
// dead letters and lag, over SASL_SSL with SCRAM-SHA-512 and over mutual
// TLS, against the real broker; the lake holds every change and the
// dead-letter topic every bad record.
func TestIntegrationKafkaSecurity(t *testing.T) {
	sec := needSecuredStack(t)
	t.Setenv("FHIRLAKE_IT_KAFKA_PASSWORD", sec.password)
	for _, c := range []struct {
		name, broker, security string
	}{
		{"sasl_ssl scram-sha-512", sec.saslSSL, sec.scram(sec.ca)},
		{"mutual tls", sec.ssl, sec.mutual(sec.ca, sec.clientCert, sec.key)},
	} {
		t.Run(c.name, func(t *testing.T) {
			secured := sec.plain
			secured.brokers = []string{c.broker}
			// The stack's environment names the plaintext listener, and
			// overrides the file.
			t.Setenv("FHIRLAKE_KAFKA_BROKERS", c.broker)
			tenants := []string{"acme"}
			r := newRun(t, secured, tenants, bucket, c.security)
			adm := r.admin(t, sec.plain)

			r.fhirlake(t, "topics", "create")
			topics, err := adm.ListTopics(context.Background(), r.topic, r.dlq)
			if err != nil || !topics.Has(r.topic) || !topics.Has(r.dlq) {
				t.Fatalf("topics create over %s: got %v, %v; want %s and %s", c.name, topics.Names(), err, r.topic, r.dlq)
			}

			expectFile := filepath.Join(r.dir, "expect.ndjson")
			r.fhirlake(t, "generate", "-q", "--tenants", "acme", "--patients", "8", "--seed", "3",
				"--malformed", "4", "--unroutable", "2", "--expect", expectFile)
			exp := readExpect(t, expectFile)

			cons := r.startConsumer(t)
			r.waitLag(t, adm, 2*time.Minute)
			stopConsumer(t, cons)

			checkLake(t, r.tenantLake(t, sec.plain, "acme", bucket("acme")), "acme", exp.state["acme"])
			want := exp.counts.Malformed + exp.counts.Unroutable
			if dls := deadLetters(t, sec.plain, r.dlq, want); len(dls) != want {
				t.Errorf("dead letters: got %d, want %d", len(dls), want)
			} else if got := header(dls[0], consumer.HeaderOriginalTopic); got != r.topic {
				t.Errorf("dead letter's original topic %q, want %q", got, r.topic)
			}
			if out := r.fhirlake(t, "lag"); !strings.Contains(out, r.topic) || !strings.HasSuffix(strings.TrimSpace(out), " 0") {
				t.Errorf("fhirlake lag over %s after catch-up:\n%s", c.name, out)
			}
		})
	}
}

// TestIntegrationKafkaSecurityRefused: a wrong password, an untrusted
// broker certificate, a missing client certificate and a missing secret
// end topics create, lag and consume at once, with one line saying why
// and a non-zero exit, never retries.
func TestIntegrationKafkaSecurityRefused(t *testing.T) {
	sec := needSecuredStack(t)
	other, err := testcert.NewCA("a CA the broker does not use")
	if err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(otherCA, other.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Unsetenv("FHIRLAKE_IT_UNSET_PASSWORD")
	for _, c := range []struct {
		name, broker, security, password, want string
	}{
		{"wrong password", sec.saslSSL, sec.scram(sec.ca), "not-the-password",
			"kafka: authentication failed (check kafka.sasl and the secrets it names): SASL_AUTHENTICATION_FAILED"},
		{"untrusted broker certificate", sec.saslSSL, sec.scram(otherCA), sec.password,
			"kafka: TLS: the broker's certificate is not trusted"},
		{"no client certificate", sec.ssl, sec.mutual(sec.ca, "", ""), sec.password,
			"kafka: TLS: the broker refused the connection"},
		{"missing secret", sec.saslSSL, strings.Replace(sec.scram(sec.ca), "FHIRLAKE_IT_KAFKA_PASSWORD", "FHIRLAKE_IT_UNSET_PASSWORD", 1), sec.password,
			"kafka.sasl.password_env: environment variable FHIRLAKE_IT_UNSET_PASSWORD is not set"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("FHIRLAKE_IT_KAFKA_PASSWORD", c.password)
			secured := sec.plain
			secured.brokers = []string{c.broker}
			t.Setenv("FHIRLAKE_KAFKA_BROKERS", c.broker)
			r := newRun(t, secured, []string{"acme"}, bucket, c.security)
			for _, args := range [][]string{{"topics", "create"}, {"lag"}, {"consume", "--no-create-topics"}} {
				out := refused(t, r, args...)
				if out != "fhirlake: "+c.want && !strings.HasPrefix(out, "fhirlake: "+c.want) {
					t.Errorf("fhirlake %s: got %q, want one line starting %q", strings.Join(args, " "), out, "fhirlake: "+c.want)
				}
			}
			// Nothing was created through the refused connection.
			topics, err := r.admin(t, sec.plain).ListTopics(context.Background(), r.topic)
			if err == nil && topics.Has(r.topic) {
				t.Errorf("topic %s exists after refused connections", r.topic)
			}
		})
	}
}

// refusedWithin bounds a refused command: it must end on its own long
// before this, a retry loop would not.
const refusedWithin = 30 * time.Second

// refused runs fhirlake with args, which must fail within refusedWithin
// with a non-zero exit and a single line of output, returned.
func refused(t *testing.T, r *run, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), refusedWithin)
	defer cancel()
	cmd := r.cmd(ctx, append(args, "--log-level", "warn")...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("fhirlake %s still running after %s (retrying?):\n%s", strings.Join(args, " "), refusedWithin, out.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("fhirlake %s: got %v, want a non-zero exit\n%s", strings.Join(args, " "), err, out.String())
	}
	text := strings.TrimSpace(out.String())
	if strings.Count(text, "\n") != 0 {
		t.Errorf("fhirlake %s: want one line of output, got:\n%s", strings.Join(args, " "), text)
	}
	return text
}
