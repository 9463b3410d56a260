package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"fhirlake/config"
)

// tlsCheckEvery is how often, at most, serve looks whether its certificate,
// key or client CA files changed; a handshake after that reads them again.
var tlsCheckEvery = 5 * time.Second

// serveTLSConfig is the query server's TLS configuration: the certificate
// pair (and the client CA, when set) read now, then again on a handshake
// when a file changed, checked at most every `every`. A file that does
// not load now is an error naming its key; later, the previous one stays
// in service and the failure is logged.
func serveTLSConfig(tc config.ServeTLS, every time.Duration, log *slog.Logger) (*tls.Config, error) {
	pair, err := newReloader("certificate", []string{tc.CertFile, tc.KeyFile}, every, log, func() (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(tc.CertFile, tc.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("serve.tls.cert_file %s, key_file %s: %w", tc.CertFile, tc.KeyFile, err)
		}
		return &c, nil
	})
	if err != nil {
		return nil, err
	}
	base := &tls.Config{
		MinVersion:     tc.TLSVersion(),
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return pair.get(), nil },
	}
	if tc.ClientCAFile == "" {
		return base, nil
	}
	cas, err := newReloader("client CA", []string{tc.ClientCAFile}, every, log, func() (*x509.CertPool, error) {
		return loadCAs(tc.ClientCAFile)
	})
	if err != nil {
		return nil, err
	}
	base.ClientAuth = tls.RequireAndVerifyClientCert
	base.ClientCAs = cas.get()
	cfg := base.Clone()
	// Each handshake verifies the client against the CA in the file now.
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.ClientCAs = cas.get()
		return c, nil
	}
	return cfg, nil
}

// loadCAs reads a PEM bundle of CA certificates.
func loadCAs(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("serve.tls.client_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("serve.tls.client_ca_file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// reloader holds what load made of files, and loads it again when one of
// the files changed (its identity, size or modification time), checked at
// most every `every` by get. A load that fails keeps the previous value.
type reloader[T any] struct {
	what  string
	files []string
	every time.Duration
	log   *slog.Logger
	load  func() (T, error)

	mu      sync.Mutex
	cur     T
	seen    []os.FileInfo // the files as cur, or the last failed load, found them
	next    time.Time     // no look at the files before then
	lastErr string        // the failure last logged, not logged again
}

func newReloader[T any](what string, files []string, every time.Duration, log *slog.Logger, load func() (T, error)) (*reloader[T], error) {
	r := &reloader[T]{what: what, files: files, every: every, log: log, load: load}
	var err error
	if r.cur, err = load(); err != nil {
		return nil, err
	}
	seen, err := stat(files)
	if err != nil {
		return nil, fmt.Errorf("serve.tls: %w", err)
	}
	r.seen, r.next = seen, time.Now().Add(every)
	return r, nil
}

// get returns the value in service, loading the files again first if it
// is time to look and they changed.
func (r *reloader[T]) get() T {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Before(r.next) {
		return r.cur
	}
	r.next = now.Add(r.every)
	seen, err := stat(r.files)
	if err == nil && same(seen, r.seen) {
		return r.cur
	}
	if err == nil {
		// A failed load is not tried again until a file changes again.
		r.seen = seen
		var v T
		if v, err = r.load(); err == nil {
			r.cur, r.lastErr = v, ""
			r.log.Info("serve: TLS "+r.what+" reloaded", "files", r.files)
			return r.cur
		}
	}
	if err.Error() != r.lastErr {
		r.lastErr = err.Error()
		r.log.Error("serve: keeping the previous TLS "+r.what, "err", err)
	}
	return r.cur
}

func stat(files []string) ([]os.FileInfo, error) {
	out := make([]os.FileInfo, len(files))
	for i, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, err
		}
		out[i] = fi
	}
	return out, nil
}

// same says whether every file is the one seen before, unchanged. A
// Kubernetes Secret volume swaps a symbolic link to new files: os.Stat
// follows it, so the identity differs.
func same(a, b []os.FileInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !os.SameFile(a[i], b[i]) || a[i].Size() != b[i].Size() || !a[i].ModTime().Equal(b[i].ModTime()) {
			return false
		}
	}
	return true
}
