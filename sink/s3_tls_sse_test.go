package sink

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestS3RefusesBadEncryptionAndCAFile: a store is not built with an encryption it
// could not ask for, or a CA bundle it cannot use.
func TestS3RefusesBadEncryptionAndCAFile(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		o    S3Options
		want string
	}{
		"kms without a key":   {S3Options{Encryption: Encryption{Mode: EncryptKMS}}, "sse-kms needs a KMS key id"},
		"a key without kms":   {S3Options{Encryption: Encryption{Mode: EncryptS3, KMSKeyID: "k"}}, "only used with sse-kms"},
		"unknown mode":        {S3Options{Encryption: Encryption{Mode: "AES256"}}, `unknown mode "AES256"`},
		"missing CA file":     {S3Options{CAFile: filepath.Join(t.TempDir(), "none.pem")}, "none.pem: no such file"},
		"CA file without PEM": {S3Options{CAFile: notPEM}, "holds no PEM certificate"},
	} {
		c.o.Bucket, c.o.AccessKey, c.o.SecretKey = "b", "k", "s"
		if _, err := NewS3(context.Background(), c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error mentioning %q", name, err, c.want)
		}
	}
}

// TestAnUntrustedEndpointIsNamedAsSuch: a write to an S3 endpoint whose
// certificate no configured authority signed fails as ErrUntrusted (the
// consumer's log and the store-error class say so), and trusting the
// endpoint's CA through CAFile makes the same write succeed.
func TestAnUntrustedEndpointIsNamedAsSuch(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "part.parquet")
	if err := os.WriteFile(file, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	put := func(caFile string) error {
		s, err := NewS3(context.Background(), S3Options{Bucket: "b", Endpoint: srv.URL, PathStyle: true,
			Region: "us-east-1", AccessKey: "k", SecretKey: "s", CAFile: caFile})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return s.Put(ctx, "speed/x.parquet", file)
	}
	err := put("")
	if !errors.Is(err, ErrUntrusted) || errors.Is(err, ErrAccessDenied) {
		t.Fatalf("put to an untrusted endpoint: %v, want ErrUntrusted", err)
	}
	if !strings.Contains(err.Error(), "store.ca_file") {
		t.Errorf("the error does not say what to check: %v", err)
	}
	if err := put(ca); err != nil {
		t.Fatalf("put with the endpoint's CA trusted: %v", err)
	}
}
