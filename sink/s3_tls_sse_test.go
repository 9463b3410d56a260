package sink

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
