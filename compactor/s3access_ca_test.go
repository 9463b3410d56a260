package compactor

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/credentials"
)

// TestS3AccessEnvCAFile: the tenant's CA bundle reaches dbt's plugin as an absolute
// path (dbt runs in the run's own directory), and nothing is set without one.
func TestS3AccessEnvCAFile(t *testing.T) {
	creds := credentials.NewStaticCredentialsProvider("k", "s", "")
	env, err := (&S3Access{Credentials: creds, CAFile: "certs/ca.pem"}).env("s3://b")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("certs/ca.pem")
	if !slices.Contains(env, "FHIRLAKE_DBT_S3_CA_FILE="+abs) {
		t.Errorf("env %v lacks FHIRLAKE_DBT_S3_CA_FILE=%s", env, abs)
	}
	env, err = (&S3Access{Credentials: creds}).env("s3://b")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "FHIRLAKE_DBT_S3_CA_FILE=") {
			t.Errorf("no ca_file, yet %s", kv)
		}
	}
}
