package sink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Encryption is the server-side encryption an S3 store asks for every object
// it writes: S3's own keys (SSE-S3) or a KMS key (SSE-KMS). Reads need nothing:
// S3 decrypts for whoever may read the object (and, with SSE-KMS, use the key).
type Encryption struct {
	// Mode is EncryptNone, EncryptS3 or EncryptKMS.
	Mode EncryptionMode
	// KMSKeyID is the KMS key of EncryptKMS: a key id, key ARN or alias ARN.
	KMSKeyID string
}

// EncryptionMode is what an S3 store asks in x-amz-server-side-encryption.
type EncryptionMode string

const (
	// EncryptNone asks nothing: the bucket's default encryption applies.
	EncryptNone EncryptionMode = ""
	// EncryptS3 asks for SSE-S3 (AES256), with keys S3 manages.
	EncryptS3 EncryptionMode = "sse-s3"
	// EncryptKMS asks for SSE-KMS with Encryption.KMSKeyID.
	EncryptKMS EncryptionMode = "sse-kms"
)

func (e Encryption) validate() error {
	switch e.Mode {
	case EncryptNone, EncryptS3:
		if e.KMSKeyID != "" {
			return fmt.Errorf("encryption: a KMS key id is only used with %s", EncryptKMS)
		}
	case EncryptKMS:
		if e.KMSKeyID == "" {
			return fmt.Errorf("encryption: %s needs a KMS key id", EncryptKMS)
		}
	default:
		return fmt.Errorf("encryption: unknown mode %q (want %s or %s)", e.Mode, EncryptS3, EncryptKMS)
	}
	return nil
}

// apply asks for the encryption on one PutObject: every object the store
// writes goes through it.
func (e Encryption) apply(in *s3.PutObjectInput) {
	switch e.Mode {
	case EncryptS3:
		in.ServerSideEncryption = types.ServerSideEncryptionAes256
	case EncryptKMS:
		in.ServerSideEncryption = types.ServerSideEncryptionAwsKms
		in.SSEKMSKeyId = aws.String(e.KMSKeyID)
	}
}

// httpClient is the HTTP client of a tenant's S3 and STS requests when it
// trusts the certificate authorities of the PEM bundle at caFile besides the
// system's (a private endpoint whose certificate a private CA signed); nil
// when caFile is empty.
func httpClient(caFile string) (aws.HTTPClient, error) {
	if caFile == "" {
		return nil, nil
	}
	pool, err := caPool(caFile)
	if err != nil {
		return nil, err
	}
	return awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tr.TLSClientConfig.RootCAs = pool
	}), nil
}

// caPool is the system's certificate pool with the PEM bundle at path added.
func caPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("ca file " + path + ": holds no PEM certificate")
	}
	return pool, nil
}
