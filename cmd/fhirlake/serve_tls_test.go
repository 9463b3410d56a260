package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fhirlake/config"
	"fhirlake/internal/testcert"
	"fhirlake/query/querytest"
)

// testCA signs certificates for the tests (internal/testcert).
type testCA struct {
	ca  *testcert.CA
	pem []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	ca, err := testcert.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{ca: ca, pem: ca.CertPEM()}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(ca.pem)
	return p
}

// issue returns the PEM certificate and key of a leaf named name, for
// 127.0.0.1 (server) or a client.
func (ca *testCA) issue(t *testing.T, name string, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	issue := func() (testcert.Pair, error) { return ca.ca.Server(name, "127.0.0.1") }
	if client {
		issue = func() (testcert.Pair, error) { return ca.ca.Client(name) }
	}
	pair, err := issue()
	if err != nil {
		t.Fatal(err)
	}
	return pair.Cert, pair.Key
}

func (ca *testCA) clientCert(t *testing.T, name string) tls.Certificate {
	t.Helper()
	c, k := ca.issue(t, name, true)
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// replaceFile puts data at path as a new file renamed over the old one, as
// a certificate manager does.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// logBuffer is a log every goroutine may write to.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// eventually polls cond until it holds, failing after a generous bound.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// startServing runs listenAndServe with a handler answering "ok" until
// the test ends; it returns once the address accepts connections.
func startServing(t *testing.T, sc config.Serve) (addr string, logs *logBuffer) {
	t.Helper()
	logs = &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	sc.Listen = freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- listenAndServe(ctx, sc.WithDefaults(), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }), log)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	eventually(t, "the server to listen", func() bool { return strings.Contains(logs.String(), "msg=serving") })
	return sc.Listen, logs
}

// offer makes a client present cert whichever CAs the server names (Go's
// client otherwise sends only a certificate of one of them).
func offer(cert tls.Certificate) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
}

// get requests https://addr/ with cfg and returns the body, or the error.
func get(addr string, cfg *tls.Config) (string, error) {
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}, Timeout: 10 * time.Second}
	defer cl.CloseIdleConnections()
	resp, err := cl.Get("https://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// served returns the common name of the certificate addr presents.
func served(t *testing.T, addr string, roots *x509.CertPool) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

type tlsFiles struct{ cert, key, ca string }

func writeServerPair(t *testing.T, ca *testCA, name string) tlsFiles {
	t.Helper()
	dir := t.TempDir()
	f := tlsFiles{cert: filepath.Join(dir, "tls.crt"), key: filepath.Join(dir, "tls.key"), ca: filepath.Join(dir, "ca.crt")}
	c, k := ca.issue(t, name, false)
	replaceFile(t, f.cert, c)
	replaceFile(t, f.key, k)
	return f
}

// A client that trusts the CA gets an answer; one that does not, or that
// speaks plain HTTP, does not.
func TestServeTLSHandshake(t *testing.T) {
	ca := newTestCA(t, "server CA")
	f := writeServerPair(t, ca, "query.one")
	addr, logs := startServing(t, config.Serve{TLS: config.ServeTLS{CertFile: f.cert, KeyFile: f.key}})
	if !strings.Contains(logs.String(), "scheme=https") {
		t.Errorf("the log does not say it serves HTTPS:\n%s", logs)
	}
	if body, err := get(addr, &tls.Config{RootCAs: ca.pool()}); err != nil || body != "ok" {
		t.Fatalf("with the CA: got %q, %v", body, err)
	}
	if got := served(t, addr, ca.pool()); got != "query.one" {
		t.Errorf("served %q, want query.one", got)
	}
	if _, err := get(addr, &tls.Config{RootCAs: newTestCA(t, "another CA").pool()}); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("a client without the CA: got %v, want an unknown authority", err)
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain HTTP: got %d, want 400", resp.StatusCode)
	}
}

func TestServeTLSMinVersion13(t *testing.T) {
	ca := newTestCA(t, "server CA")
	f := writeServerPair(t, ca, "query.one")
	addr, _ := startServing(t, config.Serve{TLS: config.ServeTLS{CertFile: f.cert, KeyFile: f.key, MinVersion: "1.3"}})
	if _, err := get(addr, &tls.Config{RootCAs: ca.pool(), MaxVersion: tls.VersionTLS12}); err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.2 against min_version 1.3: got %v, want a protocol version alert", err)
	}
	if body, err := get(addr, &tls.Config{RootCAs: ca.pool()}); err != nil || body != "ok" {
		t.Errorf("TLS 1.3: got %q, %v", body, err)
	}
}

// With client_ca_file, a client needs a certificate of that CA; the CA
// file is read again when it changes.
func TestServeTLSClientCertificates(t *testing.T) {
	tlsCheckEvery = 10 * time.Millisecond
	t.Cleanup(func() { tlsCheckEvery = 5 * time.Second })
	ca := newTestCA(t, "server CA")
	f := writeServerPair(t, ca, "query.one")
	clients := newTestCA(t, "clients")
	replaceFile(t, f.ca, clients.pem)
	addr, logs := startServing(t, config.Serve{TLS: config.ServeTLS{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.ca}})
	alice := clients.clientCert(t, "alice")
	other := newTestCA(t, "other clients")
	mallory := offer(other.clientCert(t, "mallory"))
	// TLS 1.3 clients finish their handshake before the server checks their
	// certificate: its alert may arrive as a reset. TLS 1.2 ones hear why.
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		if body, err := get(addr, &tls.Config{RootCAs: ca.pool(), MaxVersion: v}); err == nil || v == tls.VersionTLS12 && !strings.Contains(err.Error(), "handshake failure") {
			t.Errorf("TLS %x without a client certificate: got %q, %v; want a handshake failure", v, body, err)
		}
		if body, err := get(addr, &tls.Config{RootCAs: ca.pool(), MaxVersion: v, GetClientCertificate: mallory}); err == nil || v == tls.VersionTLS12 && !strings.Contains(err.Error(), "unknown certificate authority") {
			t.Errorf("TLS %x with a certificate of another CA: got %q, %v; want unknown certificate authority", v, body, err)
		}
	}
	if body, err := get(addr, &tls.Config{RootCAs: ca.pool(), Certificates: []tls.Certificate{alice}}); err != nil || body != "ok" {
		t.Fatalf("with a client certificate: got %q, %v", body, err)
	}

	// The clients' CA is replaced: alice's certificate is refused, one of the new CA accepted.
	replaceFile(t, f.ca, other.pem)
	eventually(t, "the new client CA", func() bool {
		_, err := get(addr, &tls.Config{RootCAs: ca.pool(), MaxVersion: tls.VersionTLS12, GetClientCertificate: offer(alice)})
		return err != nil && strings.Contains(err.Error(), "unknown certificate authority")
	})
	if body, err := get(addr, &tls.Config{RootCAs: ca.pool(), Certificates: []tls.Certificate{other.clientCert(t, "bob")}}); err != nil || body != "ok" {
		t.Errorf("a certificate of the new CA: got %q, %v", body, err)
	}
	// A file without a certificate keeps the CA in service.
	replaceFile(t, f.ca, []byte("not a certificate\n"))
	eventually(t, "the failed reload to be logged", func() bool {
		_, _ = get(addr, &tls.Config{RootCAs: ca.pool()}) // a handshake makes it look
		return strings.Contains(logs.String(), "keeping the previous TLS client CA")
	})
	if body, err := get(addr, &tls.Config{RootCAs: ca.pool(), Certificates: []tls.Certificate{other.clientCert(t, "bob")}}); err != nil || body != "ok" {
		t.Errorf("after a broken CA file: got %q, %v; want the previous CA in service", body, err)
	}
}

// New certificate files are served without a restart; a pair that does not
// load leaves the previous one in service.
func TestServeTLSReload(t *testing.T) {
	tlsCheckEvery = 10 * time.Millisecond
	t.Cleanup(func() { tlsCheckEvery = 5 * time.Second })
	ca := newTestCA(t, "server CA")
	f := writeServerPair(t, ca, "query.one")
	addr, logs := startServing(t, config.Serve{TLS: config.ServeTLS{CertFile: f.cert, KeyFile: f.key}})
	if got := served(t, addr, ca.pool()); got != "query.one" {
		t.Fatalf("served %q, want query.one", got)
	}

	c, k := ca.issue(t, "query.two", false)
	replaceFile(t, f.key, k)
	replaceFile(t, f.cert, c)
	eventually(t, "query.two to be served", func() bool { return served(t, addr, ca.pool()) == "query.two" })
	if !strings.Contains(logs.String(), "TLS certificate reloaded") {
		t.Errorf("the reload is not logged:\n%s", logs)
	}

	// A certificate without its key: the key file still holds query.two's.
	c3, _ := ca.issue(t, "query.three", false)
	replaceFile(t, f.cert, c3)
	eventually(t, "the failed reload to be logged", func() bool {
		served(t, addr, ca.pool())
		return strings.Contains(logs.String(), "keeping the previous TLS certificate")
	})
	if got := served(t, addr, ca.pool()); got != "query.two" {
		t.Errorf("after a mismatched pair: served %q, want query.two kept", got)
	}
	// Its key arrives: the pair loads.
	c4, k4 := ca.issue(t, "query.four", false)
	replaceFile(t, f.key, k4)
	replaceFile(t, f.cert, c4)
	eventually(t, "query.four to be served", func() bool { return served(t, addr, ca.pool()) == "query.four" })
}

func TestServeTLSBadFiles(t *testing.T) {
	ca := newTestCA(t, "server CA")
	f := writeServerPair(t, ca, "query.one")
	for name, tc := range map[string]struct {
		tls  config.ServeTLS
		want string
	}{
		"no certificate file": {config.ServeTLS{CertFile: f.cert + ".missing", KeyFile: f.key}, "serve.tls.cert_file"},
		"key of another pair": {config.ServeTLS{CertFile: f.cert, KeyFile: writeServerPair(t, ca, "x").key}, "private key does not match public key"},
		"no client CA file":   {config.ServeTLS{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.ca + ".missing"}, "serve.tls.client_ca_file"},
		"client CA not PEM":   {config.ServeTLS{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.key}, "no PEM certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			sc := config.Serve{Listen: freeAddr(t), TLS: tc.tls}.WithDefaults()
			err := listenAndServe(context.Background(), sc, http.NotFoundHandler(), slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error about %s", err, tc.want)
			}
		})
	}
}

// Plain HTTP on an address other machines reach is served, with a warning.
func TestServePlainHTTPWarning(t *testing.T) {
	for listen, warn := range map[string]bool{"127.0.0.1:0": false, "0.0.0.0:0": true} {
		logs := &logBuffer{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- listenAndServe(ctx, config.Serve{Listen: listen}.WithDefaults(), http.NotFoundHandler(), slog.New(slog.NewTextHandler(logs, nil)))
		}()
		eventually(t, "the server to listen", func() bool { return strings.Contains(logs.String(), "msg=serving") })
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "set serve.tls"); got != warn {
			t.Errorf("listen %s: warning %v, want %v:\n%s", listen, got, warn, logs)
		}
	}
}

// TestServeOverTLS runs `fhirlake serve` with serve.tls and a client CA
// over a local tenant and queries it over HTTPS.
func TestServeOverTLS(t *testing.T) {
	dir := t.TempDir()
	lake := filepath.Join(dir, "lake", "acme")
	querytest.WriteRaw(t, lake, "acme", "t-0-0-0", []querytest.Row{{Type: "Patient", ID: "p1", Version: "1", Op: "upsert", Offset: 0}})
	ca := newTestCA(t, "server CA")
	f := writeServerPair(t, ca, "query.acme")
	clients := newTestCA(t, "clients")
	replaceFile(t, f.ca, clients.pem)
	addr := freeAddr(t)
	conf := fmt.Sprintf(`kafka: {brokers: ["127.0.0.1:1"]}
work_dir: %s
serve:
  listen: %s
  api_keys: [{tenant: acme, key_sha256: %s}]
  tls: {cert_file: %s, key_file: %s, client_ca_file: %s, min_version: "1.3"}
tenants:
  - {name: acme, store: {type: local, path: %s}}
`, filepath.Join(dir, "work"), addr, config.HashAPIKey("k"), f.cert, f.key, f.ca, lake)
	path := filepath.Join(dir, "fhirlake.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	root := newRoot()
	root.SetArgs([]string{"--config", path, "serve", "--log-level", "error"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop")
		}
	}()
	query := func(cfg *tls.Config) (int, string, error) {
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
		defer cl.CloseIdleConnections()
		req, _ := http.NewRequest("POST", "https://"+addr+"/v1/tenants/acme/query", strings.NewReader("SELECT count(*) AS n FROM patient"))
		req.Header.Set("Authorization", "Bearer k")
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Accept", "text/csv")
		resp, err := cl.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	trusted := &tls.Config{RootCAs: ca.pool(), Certificates: []tls.Certificate{clients.clientCert(t, "dashboards")}}
	eventually(t, "serve to listen", func() bool {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	code, body, err := query(trusted)
	if err != nil || code != 200 || body != "n\n1\n" {
		t.Fatalf("query over HTTPS: got %d %q %v", code, body, err)
	}
	if _, _, err := query(&tls.Config{RootCAs: ca.pool()}); err == nil {
		t.Error("a client without a certificate was answered")
	}
}
