//go:build integration

// Integration tests of a tenant's encryption at rest and CA bundle: every object the
// consumer, backfill and the compactor write asks for the tenant's server-side
// encryption, and a private S3 endpoint behind a certificate of a private CA is
// reached by all three, and by DuckDB in dbt and in queries, through store.ca_file.
package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"fhirlake/lake"
	"fhirlake/sink"
)

// objectWrite is one request that creates an object, as the S3 server received it.
type objectWrite struct {
	method, bucket, key string
	// sse and kmsKey are its x-amz-server-side-encryption and
	// x-amz-server-side-encryption-aws-kms-key-id headers.
	sse, kmsKey string
}

// maxRecordedWrites bounds what a recordingProxy keeps; a test writes far fewer.
const maxRecordedWrites = 100_000

// recordingProxy forwards every request to the real S3 server unchanged and records
// the requests that create an object: PutObject and CreateMultipartUpload (the
// parts of an upload and its completion carry no encryption headers in S3's API).
type recordingProxy struct {
	mu     sync.Mutex
	writes []objectWrite
	lost   int
	proxy  *httputil.ReverseProxy
}

func newRecordingProxy(t *testing.T, target string) *recordingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	// The Host header stays the client's: it is part of what SigV4 signs.
	return &recordingProxy{proxy: httputil.NewSingleHostReverseProxy(u)}
}

func (p *recordingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	creates := (r.Method == http.MethodPut && !q.Has("partNumber")) || (r.Method == http.MethodPost && q.Has("uploads"))
	if creates {
		bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		p.mu.Lock()
		if len(p.writes) < maxRecordedWrites {
			p.writes = append(p.writes, objectWrite{method: r.Method, bucket: bucket, key: key,
				sse: r.Header.Get("X-Amz-Server-Side-Encryption"), kmsKey: r.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id")})
		} else {
			p.lost++
		}
		p.mu.Unlock()
	}
	p.proxy.ServeHTTP(w, r)
}

func (p *recordingProxy) recorded(t *testing.T) []objectWrite {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lost > 0 {
		t.Fatalf("the proxy recorded only the first %d writes of %d", len(p.writes), len(p.writes)+p.lost)
	}
	return append([]objectWrite(nil), p.writes...)
}

// setStores lays each tenant's settings over its store in the run's configuration.
func (r *run) setStores(t *testing.T, stores map[string]map[string]any) {
	t.Helper()
	b, err := os.ReadFile(r.config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, tn := range cfg["tenants"].([]any) {
		tm := tn.(map[string]any)
		for k, v := range stores[tm["name"].(string)] {
			tm["store"].(map[string]any)[k] = v
		}
	}
	if b, err = yaml.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.config, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// patientsNDJSON writes a bulk-export file of n patients.
func patientsNDJSON(t *testing.T, dir string, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"resourceType":"Patient","id":"sse-%d","meta":{"versionId":"1","lastUpdated":"2024-05-01T10:00:00Z"},"gender":"female","birthDate":"1980-01-0%d"}`+"\n", i, i%9+1)
	}
	p := filepath.Join(dir, "Patient.ndjson")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestIntegrationEncryptionHeaders: a tenant on SSE-KMS and one on SSE-S3, written by
// the consumer, backfill and the compactor through a proxy in front of the real S3
// server. Every object written carries its tenant's encryption headers, and what
// was written is there to read.
func TestIntegrationEncryptionHeaders(t *testing.T) {
	st := needStack(t)
	needDBT(t)
	proxy := newRecordingProxy(t, st.endpoint)
	srv := httptest.NewServer(proxy)
	defer srv.Close()
	tenants := []string{"acme", "globex"}
	const kmsKey = "arn:aws:kms:us-east-1:123456789012:key/0b4d5c1e-acme"
	r := newRun(t, stack{brokers: st.brokers, endpoint: srv.URL}, tenants, bucket, compactSettings)
	r.setStores(t, map[string]map[string]any{
		"acme":   {"encryption": map[string]any{"mode": "sse-kms", "kms_key_id": kmsKey}},
		"globex": {"encryption": map[string]any{"mode": "sse-s3"}},
	})
	r.fhirlake(t, "topics", "create")
	s := r.generate(t, st, "--tenants", strings.Join(tenants, ","), "--patients", "10", "--seed", "5")
	s.produce(t, -1)
	r.consumeAll(t, st)
	r.fhirlake(t, "backfill", "-q", "--tenant", "acme", patientsNDJSON(t, r.dir, 3))
	r.mustCompact(t)

	want := map[string]objectWrite{
		bucket("acme"):   {sse: "aws:kms", kmsKey: kmsKey},
		bucket("globex"): {sse: "AES256"},
	}
	// What each tenant must have written: speed files (the consumer's, and backfill's
	// for acme), the snapshot's files, its manifest and the compactor's lease.
	kinds := map[string]*regexp.Regexp{
		"speed file":    regexp.MustCompile(`^` + regexp.QuoteMeta(r.prefix+"/"+lake.SpeedPrefix) + `.*\.parquet$`),
		"snapshot file": regexp.MustCompile(`^` + regexp.QuoteMeta(r.prefix+"/"+lake.BatchPrefix) + `.*\.parquet$`),
		"manifest":      regexp.MustCompile(`^` + regexp.QuoteMeta(r.prefix+"/"+lake.ManifestKey) + `$`),
		"lease":         regexp.MustCompile(`^` + regexp.QuoteMeta(r.prefix+"/"+lake.LeaseKey) + `$`),
	}
	seen := map[string]map[string]int{}
	for _, w := range proxy.recorded(t) {
		exp, ok := want[w.bucket]
		if !ok {
			t.Errorf("%s %s/%s: a write to a bucket of no tenant of the run", w.method, w.bucket, w.key)
			continue
		}
		if w.sse != exp.sse || w.kmsKey != exp.kmsKey {
			t.Errorf("%s %s/%s: encryption %q key %q, want %q key %q", w.method, w.bucket, w.key, w.sse, w.kmsKey, exp.sse, exp.kmsKey)
		}
		if seen[w.bucket] == nil {
			seen[w.bucket] = map[string]int{}
		}
		for kind, re := range kinds {
			if re.MatchString(w.key) {
				seen[w.bucket][kind]++
			}
		}
	}
	for b := range want {
		for kind := range kinds {
			if seen[b][kind] == 0 {
				t.Errorf("bucket %s: no %s write went through the proxy (writes seen: %v)", b, kind, seen[b])
			}
		}
	}
	t.Logf("writes per bucket and kind: %v", seen)

	// The objects are in the buckets: each tenant's snapshot reads back with its own
	// key, straight from the server, and acme's holds the backfilled patients.
	for _, tn := range tenants {
		snap := currentSnapshot(t, r.tenantStore(t, st, tn))
		if snap.m.Tenant != tn || len(snap.m.Models) == 0 {
			t.Errorf("tenant %s: snapshot %+v", tn, snap.m)
		}
	}
	objs, err := r.tenantStore(t, st, "acme").List(context.Background(), lake.SpeedPrefix)
	if err != nil || len(objs) == 0 {
		t.Fatalf("acme's speed layer: %d objects, %v", len(objs), err)
	}
	out := r.fhirlake(t, "query", "--tenant", "acme", "--format", "csv", "SELECT count(*) FROM resources WHERE resource_type = 'Patient' AND id LIKE 'sse-%'")
	if !strings.Contains(out, "\n3") {
		t.Errorf("acme's backfilled patients: query said\n%s\nwant 3", out)
	}
}

// tlsProxy is an https endpoint in front of the real S3 server, with a certificate of
// its own CA, written as a PEM bundle to caFile.
func tlsProxy(t *testing.T, target string) (endpoint, caFile string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(u))
	// Handshakes refused by a client without the CA are what the test expects.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "private-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return srv.URL, caFile
}

// TestIntegrationS3CABundle: a tenant whose endpoint is https with a certificate of a
// private CA. Without store.ca_file, backfill fails at once with the certificate
// error; with it, the consumer and backfill write, the compactor (dbt reading
// through DuckDB's httpfs) publishes, and a query reads the lake.
func TestIntegrationS3CABundle(t *testing.T) {
	st := needStack(t)
	needDBT(t)
	endpoint, caFile := tlsProxy(t, st.endpoint)
	tenants := []string{"acme"}
	r := newRun(t, stack{brokers: st.brokers, endpoint: endpoint}, tenants, bucket, compactSettings)
	patients := patientsNDJSON(t, r.dir, 3)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := r.cmd(ctx, "backfill", "-q", "--tenant", "acme", patients).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "x509: certificate signed by unknown authority") {
		t.Fatalf("backfill to an endpoint of an unknown CA without ca_file: %v\n%s\nwant a failure naming the certificate", err, out)
	}
	t.Logf("without ca_file, backfill failed in %s: %s", time.Since(start).Round(time.Millisecond), lastLines(string(out), 2))

	r.setStores(t, map[string]map[string]any{"acme": {"ca_file": caFile}})
	r.fhirlake(t, "topics", "create")
	s := r.generate(t, st, "--tenants", "acme", "--patients", "10", "--seed", "6")
	s.produce(t, -1)
	r.consumeAll(t, st)
	r.fhirlake(t, "backfill", "-q", "--tenant", "acme", patients)
	r.mustCompact(t)
	snap := currentSnapshot(t, r.tenantStore(t, st, "acme"))
	if snap.m.Tenant != "acme" || !snap.m.FullRefresh {
		t.Errorf("snapshot %+v", snap.m)
	}
	if m, err := sink.ReadManifest(context.Background(), r.tenantStore(t, st, "acme")); err != nil || m == nil {
		t.Fatalf("manifest: %+v, %v", m, err)
	}
	out2 := r.fhirlake(t, "query", "--tenant", "acme", "--format", "csv", "SELECT count(*) FROM resources WHERE resource_type = 'Patient' AND id LIKE 'sse-%'")
	if !strings.Contains(out2, "\n3") {
		t.Errorf("the backfilled patients over https: query said\n%s\nwant 3", out2)
	}
}
