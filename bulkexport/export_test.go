package bulkexport_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"fhirlake/bulkexport"
	"fhirlake/internal/bulkserver"
)

// fixture is a Bulk Data server with SMART Backend Services, a set of
// resources, and what an export of it loaded.
type fixture struct {
	t    *testing.T
	srv  *bulkserver.Server
	keyP []byte
	kid  string

	mu     sync.Mutex
	loaded map[string]string // Type/id → the line as loaded
	files  []bulkexport.File
	sleeps []time.Duration
	status []string
}

func newFixture(t *testing.T, ec bool, o bulkserver.Options) *fixture {
	t.Helper()
	var pub any
	var der []byte
	var err error
	if ec {
		k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		pub = &k.PublicKey
		der, err = x509.MarshalPKCS8PrivateKey(k)
	} else {
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		pub = &k.PublicKey
		der, err = x509.MarshalPKCS8PrivateKey(k)
	}
	if err != nil {
		t.Fatal(err)
	}
	o.ClientID, o.KeyID, o.PublicKey = "fhirlake-test", "key-1", pub
	srv := bulkserver.New(o)
	t.Cleanup(srv.Close)
	for i := range 6 {
		p := fmt.Sprintf("p%d", i)
		srv.Put("Patient", p, p, map[string]any{"gender": "female"})
		srv.Put("Observation", "o"+p, p, map[string]any{"status": "final", "subject": map[string]any{"reference": "Patient/" + p}})
		srv.Put("Encounter", "e"+p, p, map[string]any{"status": "finished"})
	}
	srv.Put("Group", "g1", "", map[string]any{"type": "person"})
	srv.Group("g1", "p1", "p2")
	return &fixture{t: t, srv: srv, keyP: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), kid: "key-1", loaded: map[string]string{}}
}

func (f *fixture) smart(ctx context.Context) *bulkexport.SMART {
	f.t.Helper()
	s, err := bulkexport.NewSMART(ctx, bulkexport.NewHTTPClient(), f.srv.URL, bulkexport.SMARTOptions{ClientID: "fhirlake-test", KeyPEM: f.keyP, KeyID: f.kid})
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// options are an export's options into dir, loading into f.loaded.
func (f *fixture) options(dir string, tokens bulkexport.Tokens) bulkexport.Options {
	return bulkexport.Options{
		Dir: dir, Tokens: tokens, Parallel: 3,
		Sleep: func(ctx context.Context, d time.Duration) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.sleeps = append(f.sleeps, d)
			return ctx.Err()
		},
		Progress: func(p bulkexport.Progress) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if p.Status != "" && (len(f.status) == 0 || f.status[len(f.status)-1] != p.Status) {
				f.status = append(f.status, p.Status)
			}
		},
		Load: f.load,
	}
}

func (f *fixture) load(_ context.Context, file bulkexport.File) error {
	fh, err := os.Open(file.Path)
	if err != nil {
		return err
	}
	defer fh.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files = append(f.files, file)
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		var r struct{ ResourceType, ID string }
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("%s: %w", file.Path, err)
		}
		f.loaded[r.ResourceType+"/"+r.ID] = sc.Text()
	}
	return sc.Err()
}

// wantLoaded checks that exactly the server's resources accepted by keep
// were loaded, each as the server holds it.
func (f *fixture) wantLoaded(keep func(bulkserver.Resource) bool) {
	f.t.Helper()
	want := map[string]string{}
	for k, r := range f.srv.Resources() {
		if keep(r) {
			want[k] = string(r.Body)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, body := range want {
		if f.loaded[k] != body {
			f.t.Errorf("%s: loaded %q, want %q", k, f.loaded[k], body)
		}
	}
	for k := range f.loaded {
		if _, ok := want[k]; !ok {
			f.t.Errorf("%s: loaded, but not in the export", k)
		}
	}
}

func all(bulkserver.Resource) bool { return true }

func (f *fixture) count(path string) int {
	n := 0
	for _, r := range f.srv.Requests() {
		if r.Path == path || strings.HasPrefix(r.Path, path) {
			n++
		}
	}
	return n
}

func TestExportLevelsWithSMART(t *testing.T) {
	for _, tc := range []struct {
		name string
		ec   bool
		req  bulkexport.Request
		keep func(bulkserver.Resource) bool
	}{
		{"system RS384", false, bulkexport.Request{}, all},
		{"patient ES384 _type", true, bulkexport.Request{Level: bulkexport.Patient, Types: []string{"Patient", "Observation"}},
			func(r bulkserver.Resource) bool { return r.Type == "Patient" || r.Type == "Observation" }},
		{"group", true, bulkexport.Request{Level: bulkexport.Group, Group: "g1"},
			func(r bulkserver.Resource) bool { return r.Patient == "p1" || r.Patient == "p2" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.ec, bulkserver.Options{Polls: 1, FileLines: 2})
			ctx := context.Background()
			s := f.smart(ctx)
			if want := map[bool]string{false: "RS384", true: "ES384"}[tc.ec]; s.Algorithm() != want || s.TokenURL() != f.srv.TokenURL() {
				t.Fatalf("got %s at %s, want %s at %s (discovered)", s.Algorithm(), s.TokenURL(), want, f.srv.TokenURL())
			}
			req := tc.req
			req.Base = f.srv.URL
			dir := filepath.Join(t.TempDir(), "export")
			res, err := bulkexport.Export(ctx, req, f.options(dir, s))
			if err != nil {
				t.Fatal(err)
			}
			f.wantLoaded(tc.keep)
			if res.Manifest.TransactionTime.IsZero() || res.Files != len(f.files) || res.Resumed {
				t.Errorf("result: %+v, want a transaction time, %d files, not resumed", res, len(f.files))
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the export's directory is left after a complete export: %v", err)
			}
			if f.srv.TokensIssued() != 1 {
				t.Errorf("tokens issued: got %d, want 1 (reused while valid)", f.srv.TokensIssued())
			}
		})
	}
}

// TestExportHonoursRetryAfter: a kick-off refused with 429 and polls
// answered 202 wait as long as the server says (capped by MaxWait), and the
// server's X-Progress is passed on.
func TestExportHonoursRetryAfter(t *testing.T) {
	f := newFixture(t, true, bulkserver.Options{Polls: 2, RetryAfter: "3"})
	f.srv.Fail(bulkserver.KickOff, bulkserver.Fault{Status: 429, RetryAfter: "7"}, bulkserver.Fault{Status: 503, RetryAfter: "5000"})
	f.srv.Fail(bulkserver.Status, bulkserver.Fault{Status: 503})
	ctx := context.Background()
	o := f.options(t.TempDir(), f.smart(ctx))
	o.MaxWait = time.Minute
	if _, err := bulkexport.Export(ctx, bulkexport.Request{Base: f.srv.URL}, o); err != nil {
		t.Fatal(err)
	}
	f.wantLoaded(all)
	want := []time.Duration{7 * time.Second, time.Minute, time.Second, 3 * time.Second, 3 * time.Second}
	if !slices.Equal(f.sleeps, want) {
		t.Errorf("waits: got %v, want %v (Retry-After, capped by MaxWait; a backoff for a 503 without one)", f.sleeps, want)
	}
	if want := []string{"33% done", "66% done"}; !slices.Equal(f.status, want) {
		t.Errorf("progress: got %q, want %q", f.status, want)
	}
}

// TestExportResumesBrokenDownloads: a file whose connection breaks is asked
// for again from where it broke; a server that ignores the range sends it
// whole and it is written from the start, not appended.
func TestExportResumesBrokenDownloads(t *testing.T) {
	for _, ignoreRange := range []bool{false, true} {
		t.Run(fmt.Sprint("ignore range ", ignoreRange), func(t *testing.T) {
			f := newFixture(t, true, bulkserver.Options{})
			f.srv.Cut(1, 40, 30)
			if ignoreRange {
				f.srv.IgnoreRange()
			}
			ctx := context.Background()
			if _, err := bulkexport.Export(ctx, bulkexport.Request{Base: f.srv.URL}, f.options(t.TempDir(), f.smart(ctx))); err != nil {
				t.Fatal(err)
			}
			f.wantLoaded(all)
			var ranges []string
			for _, r := range f.srv.Requests() {
				if r.Range != "" {
					ranges = append(ranges, r.Range)
				}
			}
			if want := []string{"bytes=40-", "bytes=70-"}; !ignoreRange && !slices.Equal(ranges, want) {
				t.Errorf("ranges asked for: got %q, want %q", ranges, want)
			}
		})
	}
}

// TestExportResumesAfterInterruption: a run that stops (a download that
// keeps breaking, a load that fails) leaves its state; the next run of the
// same request asks for no new export, loads no file twice and resumes the
// broken file with a range.
func TestExportResumesAfterInterruption(t *testing.T) {
	f := newFixture(t, false, bulkserver.Options{FileLines: 3})
	ctx := context.Background()
	smart := f.smart(ctx)
	dir := t.TempDir()
	req := bulkexport.Request{Base: f.srv.URL}
	f.srv.Cut(0, 25, 25, 25, 25, 25, 25) // more breaks than retries
	o := f.options(dir, smart)
	o.Parallel = 1
	_, err := bulkexport.Export(ctx, req, o)
	if err == nil || !strings.Contains(err.Error(), "download") {
		t.Fatalf("first run: got %v, want the download's error", err)
	}

	o = f.options(dir, smart)
	calls := 0
	o.Load = func(ctx context.Context, file bulkexport.File) error {
		if calls++; calls == 2 {
			return errors.New("disk full")
		}
		return f.load(ctx, file)
	}
	if _, err := bulkexport.Export(ctx, req, o); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("second run: got %v, want the load's error", err)
	}

	res, err := bulkexport.Export(ctx, req, f.options(dir, smart))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed {
		t.Error("the third run did not resume")
	}
	f.wantLoaded(all)
	if n := f.count("/$export"); n != 1 {
		t.Errorf("kick-offs: got %d, want 1", n)
	}
	if len(f.files) != res.Files {
		t.Errorf("files loaded: got %d over three runs, want each of %d once", len(f.files), res.Files)
	}
	if !slices.ContainsFunc(f.srv.Requests(), func(r bulkserver.Request) bool { return r.Range == "bytes=150-" }) {
		t.Errorf("no range from byte 150 (6 breaks of 25 bytes) was asked for: %+v", f.srv.Requests())
	}
}

// TestExportRenewsRefusedTokens: a token the server stops accepting
// (expired) is renewed and the request repeated.
func TestExportRenewsRefusedTokens(t *testing.T) {
	f := newFixture(t, true, bulkserver.Options{TokenUses: 2, Polls: 2, FileLines: 4})
	ctx := context.Background()
	o := f.options(t.TempDir(), f.smart(ctx))
	o.Parallel = 1 // a token refused after two uses: one download at a time
	if _, err := bulkexport.Export(ctx, bulkexport.Request{Base: f.srv.URL}, o); err != nil {
		t.Fatal(err)
	}
	f.wantLoaded(all)
	if n := f.srv.TokensIssued(); n < 3 {
		t.Errorf("tokens issued: got %d, want one per two requests", n)
	}
}

// TestExportErrors: each failure ends the export with one message naming
// what failed and why.
func TestExportErrors(t *testing.T) {
	oo := `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"Job failed: out of disk"}]}`
	for _, tc := range []struct {
		name  string
		setup func(f *fixture) (bulkexport.Request, bulkexport.Tokens)
		want  []string
	}{
		{"an unsupported type", func(f *fixture) (bulkexport.Request, bulkexport.Tokens) {
			return bulkexport.Request{Base: f.srv.URL, Types: []string{"Claim"}}, f.smart(context.Background())
		}, []string{"kick-off", "400 Bad Request", "not-supported: Resource type Claim is not supported"}},
		{"an unknown group", func(f *fixture) (bulkexport.Request, bulkexport.Tokens) {
			return bulkexport.Request{Base: f.srv.URL, Level: bulkexport.Group, Group: "nope"}, f.smart(context.Background())
		}, []string{"404 Not Found", "Group/nope is not known"}},
		{"a failed job", func(f *fixture) (bulkexport.Request, bulkexport.Tokens) {
			f.srv.Fail(bulkserver.Status, bulkserver.Fault{Status: 400, Body: oo})
			return bulkexport.Request{Base: f.srv.URL}, f.smart(context.Background())
		}, []string{"status", "400 Bad Request", "Job failed: out of disk"}},
		{"5xx until retries run out", func(f *fixture) (bulkexport.Request, bulkexport.Tokens) {
			for range 6 {
				f.srv.Fail(bulkserver.Status, bulkserver.Fault{Status: 500, Body: oo})
			}
			return bulkexport.Request{Base: f.srv.URL}, f.smart(context.Background())
		}, []string{"status", "500 Internal Server Error", "Job failed"}},
		{"a refused static token", func(f *fixture) (bulkexport.Request, bulkexport.Tokens) {
			return bulkexport.Request{Base: f.srv.URL}, bulkexport.StaticToken("wrong")
		}, []string{"kick-off", "401", "static token cannot be renewed"}},
		{"a refused assertion", func(f *fixture) (bulkexport.Request, bulkexport.Tokens) {
			f.kid = "other-key"
			return bulkexport.Request{Base: f.srv.URL}, f.smart(context.Background())
		}, []string{"token from", "invalid_client: unknown kid other-key"}},
		{"a manifest without transactionTime", func(f *fixture) (bulkexport.Request, bulkexport.Tokens) {
			f.srv.RewriteManifest(func(b []byte) []byte { return []byte(strings.Replace(string(b), `"transactionTime"`, `"tt"`, 1)) })
			return bulkexport.Request{Base: f.srv.URL}, f.smart(context.Background())
		}, []string{"manifest: no transactionTime"}},
		{"a manifest naming a file by ftp", func(f *fixture) (bulkexport.Request, bulkexport.Tokens) {
			f.srv.RewriteManifest(func(b []byte) []byte { return []byte(strings.Replace(string(b), `"url":"http://`, `"url":"ftp://`, 1)) })
			return bulkexport.Request{Base: f.srv.URL}, f.smart(context.Background())
		}, []string{"manifest: output[0]", "not an http or https URL"}},
		{"a manifest that is not JSON", func(f *fixture) (bulkexport.Request, bulkexport.Tokens) {
			f.srv.RewriteManifest(func(b []byte) []byte { return b[:len(b)/2] })
			return bulkexport.Request{Base: f.srv.URL}, f.smart(context.Background())
		}, []string{"manifest: unexpected end of JSON input"}},
		{"a file that is gone", func(f *fixture) (bulkexport.Request, bulkexport.Tokens) {
			f.srv.Fail(bulkserver.File, bulkserver.Fault{Status: 404})
			return bulkexport.Request{Base: f.srv.URL}, f.smart(context.Background())
		}, []string{"download", "404 Not Found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, true, bulkserver.Options{})
			req, tokens := tc.setup(f)
			_, err := bulkexport.Export(context.Background(), req, f.options(t.TempDir(), tokens))
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("got %v, want an error containing %q", err, w)
				}
			}
		})
	}
}

// TestExportReportsErrorFiles: the OperationOutcomes of the manifest's
// error files are reported beside the loaded files.
func TestExportReportsErrorFiles(t *testing.T) {
	f := newFixture(t, true, bulkserver.Options{})
	f.srv.ErrorOutcomes(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception","diagnostics":"Observation/o9 could not be read"}]}`, `not json`)
	ctx := context.Background()
	res, err := bulkexport.Export(ctx, bulkexport.Request{Base: f.srv.URL}, f.options(t.TempDir(), f.smart(ctx)))
	if err != nil {
		t.Fatal(err)
	}
	f.wantLoaded(all)
	want := []string{"error exception: Observation/o9 could not be read", "line 2: not an OperationOutcome"}
	if !slices.Equal(res.Errors, want) || res.ErrorCount != 2 {
		t.Errorf("errors: got %q (%d), want %q", res.Errors, res.ErrorCount, want)
	}
}

func TestRequest(t *testing.T) {
	since := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, tc := range []struct {
		req        bulkexport.Request
		kick, err  string
		sourceKick string
	}{
		{req: bulkexport.Request{Base: "https://fhir.example.org/r4/"}, kick: "https://fhir.example.org/r4/$export"},
		{req: bulkexport.Request{Base: "https://x.org", Level: bulkexport.Patient, Types: []string{"Patient", "Observation"}, Since: since},
			kick: "https://x.org/Patient/$export?_since=2026-02-03T04%3A05%3A06Z&_type=Patient%2CObservation", sourceKick: "https://x.org/Patient/$export?_type=Patient%2CObservation"},
		{req: bulkexport.Request{Base: "https://x.org", Level: bulkexport.Group, Group: "g-1.a"}, kick: "https://x.org/Group/g-1.a/$export"},
		{req: bulkexport.Request{Base: "ftp://x.org"}, err: "not an http or https URL"},
		{req: bulkexport.Request{Base: "https://x.org?a=b"}, err: "no query"},
		{req: bulkexport.Request{Base: "https://x.org", Level: bulkexport.Group, Group: "a/b"}, err: "not a FHIR id"},
		{req: bulkexport.Request{Base: "https://x.org", Group: "g"}, err: "group level only"},
		{req: bulkexport.Request{Base: "https://x.org", Level: "tenant"}, err: "want system, patient or group"},
		{req: bulkexport.Request{Base: "https://x.org", Types: []string{"Patient,Observation"}}, err: "not a resource type"},
	} {
		err := tc.req.Validate()
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: got %v, want an error containing %q", tc.req, err, tc.err)
			}
		case err != nil:
			t.Errorf("%+v: %v", tc.req, err)
		case tc.req.KickOff() != tc.kick:
			t.Errorf("kick-off: got %s, want %s", tc.req.KickOff(), tc.kick)
		case tc.sourceKick != "" && tc.req.Source() != tc.sourceKick:
			t.Errorf("source: got %s, want %s", tc.req.Source(), tc.sourceKick)
		}
	}
}

// TestExportNextSince: the next export starts at the manifest's
// transactionTime, or at the server's Date on the kick-off's answer when a
// server stamps its export later than that.
func TestExportNextSince(t *testing.T) {
	f := newFixture(t, true, bulkserver.Options{})
	ctx := context.Background()
	res, err := bulkexport.Export(ctx, bulkexport.Request{Base: f.srv.URL}, f.options(t.TempDir(), f.smart(ctx)))
	if err != nil {
		t.Fatal(err)
	}
	if !res.NextSince.Equal(res.Manifest.TransactionTime) {
		t.Errorf("next since: got %s, want the transactionTime %s (earlier than the kick-off)", res.NextSince, res.Manifest.TransactionTime)
	}
	f.srv.RewriteManifest(func(b []byte) []byte {
		return regexp.MustCompile(`"transactionTime":"[^"]*"`).ReplaceAll(b, []byte(`"transactionTime":"2999-01-01T00:00:00Z"`))
	})
	before := time.Now().Add(-time.Second).Truncate(time.Second)
	res, err = bulkexport.Export(ctx, bulkexport.Request{Base: f.srv.URL}, f.options(t.TempDir(), f.smart(ctx)))
	if err != nil {
		t.Fatal(err)
	}
	if res.NextSince.Before(before) || !res.NextSince.Before(time.Now()) {
		t.Errorf("next since: got %s, want the kick-off's Date (after %s), not the transactionTime %s", res.NextSince, before, res.Manifest.TransactionTime)
	}
}
