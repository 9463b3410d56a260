package sink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// S3Options configures one tenant's bucket.
type S3Options struct {
	Bucket string
	// Prefix is prepended to every key; it may be empty.
	Prefix   string
	Endpoint string
	Region   string
	// PathStyle addresses the bucket as endpoint/bucket.
	PathStyle bool
	// AccessKey and SecretKey are this tenant's static credentials. Empty
	// means the default AWS credential chain.
	AccessKey, SecretKey string
	// SessionToken goes with temporary static credentials.
	SessionToken string
	// RoleARN, if set, is assumed (through STS, from the static keys or the
	// default chain) for every request: one role per tenant, allowed only
	// that tenant's bucket.
	RoleARN string
	// ExternalID is passed with the AssumeRole call when set.
	ExternalID string
	// SessionName names the assumed-role session. Default: fhirlake.
	SessionName string
	// STSEndpoint is the STS endpoint URL the role is assumed through: a
	// private endpoint, or a local STS in tests. Empty: the SDK's own (AWS's
	// regional STS, or $AWS_ENDPOINT_URL_STS with the default chain).
	STSEndpoint string
	// Encryption is asked for every object the store writes.
	Encryption Encryption
	// CAFile is a PEM bundle of certificate authorities trusted, besides the
	// system's, for the S3 and STS endpoints.
	CAFile string
}

// RoleSessionDuration is how long an assumed role's credentials last: an hour,
// the longest that every role allows, including a role assumed from another
// role's credentials (role chaining, as from a pod's IRSA role).
const RoleSessionDuration = time.Hour

// CredentialsExpiryWindow is how long before they expire credentials are
// renewed: whoever gets credentials from Credentials has at least this long to
// use them. The batch layer hands them to DuckDB, which signs with them until
// it is handed new ones (S3.Credentials).
const CredentialsExpiryWindow = 15 * time.Minute

// awsConfig is the SDK configuration of a tenant: its region, an HTTP client of
// its own (trusting its CA bundle, if any), and its credentials: the tenant's static key when set, else the
// default AWS chain; then, when RoleARN is set, the role assumed through STS
// from those. They are cached and renewed (CredentialsExpiryWindow), and never
// fall back to another identity.
func awsConfig(ctx context.Context, o S3Options) (aws.Config, error) {
	region := o.Region
	if region == "" {
		region = "us-east-1"
	}
	cache := func(p aws.CredentialsProvider) aws.CredentialsProvider {
		return aws.NewCredentialsCache(p, func(co *aws.CredentialsCacheOptions) { co.ExpiryWindow = CredentialsExpiryWindow })
	}
	hc, err := httpClient(o.CAFile)
	if err != nil {
		return aws.Config{}, err
	}
	cfg := aws.Config{Region: region, HTTPClient: hc}
	if hc == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if o.AccessKey != "" {
		cfg.Credentials = cache(credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, o.SessionToken))
	} else {
		loaded, err := loadDefaultConfig(ctx, region, hc)
		if err != nil {
			return aws.Config{}, fmt.Errorf("credentials: %w", err)
		}
		cfg = loaded
	}
	if o.RoleARN != "" {
		name := o.SessionName
		if name == "" {
			name = "fhirlake"
		}
		client := sts.NewFromConfig(cfg, func(so *sts.Options) {
			if o.STSEndpoint != "" {
				so.BaseEndpoint = aws.String(o.STSEndpoint)
			}
		})
		cfg.Credentials = cache(&assumeRole{arn: o.RoleARN, provider: stscreds.NewAssumeRoleProvider(client, o.RoleARN, func(ao *stscreds.AssumeRoleOptions) {
			ao.RoleSessionName = name
			ao.Duration = RoleSessionDuration
			if o.ExternalID != "" {
				ao.ExternalID = aws.String(o.ExternalID)
			}
		})})
	}
	return cfg, nil
}

// assumeRole names the role in its errors: the SDK's say only "AssumeRole".
type assumeRole struct {
	arn      string
	provider aws.CredentialsProvider
}

func (a *assumeRole) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := a.provider.Retrieve(ctx)
	if err != nil {
		return c, fmt.Errorf("assume role %s: %w", a.arn, err)
	}
	return c, nil
}

// S3 is a store in one S3 bucket, reached with one tenant's credentials.
type S3 struct {
	client  *s3.Client
	bucket  string
	prefix  string
	creds   aws.CredentialsProvider
	encrypt Encryption
}

// NewS3 builds a client from the tenant's own credentials only; it never
// falls back to another identity.
func NewS3(ctx context.Context, o S3Options) (*S3, error) {
	if o.Bucket == "" {
		return nil, errors.New("s3 store: bucket is required")
	}
	if err := o.Encryption.validate(); err != nil {
		return nil, fmt.Errorf("s3 store %s: %w", o.Bucket, err)
	}
	cfg, err := awsConfig(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("s3 store %s: %w", o.Bucket, err)
	}
	client := s3.NewFromConfig(cfg, func(opts *s3.Options) {
		if o.Endpoint != "" {
			opts.BaseEndpoint = aws.String(o.Endpoint)
		}
		opts.UsePathStyle = o.PathStyle
		// Checksums on every request are the SDK default since 2025; some
		// S3-compatible servers reject the trailing-checksum encoding, so ask
		// only when the operation requires one.
		opts.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		opts.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	prefix := strings.Trim(o.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &S3{client: client, bucket: o.Bucket, prefix: prefix, creds: cfg.Credentials, encrypt: o.Encryption}, nil
}

// Credentials are the store's credentials, renewed CredentialsExpiryWindow
// before they expire. The batch layer hands DuckDB these, from the same cache,
// so that dbt reads with exactly the identity the store writes with.
func (s *S3) Credentials() aws.CredentialsProvider { return s.creds }

func (s *S3) URL() string { return "s3://" + s.bucket + "/" + s.prefix }

// Bucket is the bucket this store writes to.
func (s *S3) Bucket() string { return s.bucket }

func (s *S3) Put(ctx context.Context, key, localPath string) error {
	f, err := os.Open(localPath)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(s.prefix + key),
		Body:          f,
		ContentLength: aws.Int64(info.Size()),
		ContentType:   aws.String("application/vnd.apache.parquet"),
	}
	s.encrypt.apply(in)
	_, err = s.client.PutObject(ctx, in)
	if err != nil {
		return fmt.Errorf("put s3://%s/%s%s: %w", s.bucket, s.prefix, key, classify(err))
	}
	return nil
}

func (s *S3) Get(ctx context.Context, key string, w io.Writer) error {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key)})
	if err != nil {
		return fmt.Errorf("get s3://%s/%s%s: %w", s.bucket, s.prefix, key, classify(err))
	}
	defer out.Body.Close()
	_, err = io.Copy(w, out.Body)
	return err
}

func (s *S3) List(ctx context.Context, prefix string) ([]Object, error) {
	var out []Object
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(s.prefix + prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s%s: %w", s.bucket, s.prefix, prefix, classify(err))
		}
		for _, o := range page.Contents {
			obj := Object{Key: strings.TrimPrefix(aws.ToString(o.Key), s.prefix), Size: aws.ToInt64(o.Size)}
			if o.LastModified != nil {
				obj.Modified = *o.LastModified
			}
			out = append(out, obj)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (s *S3) Delete(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key)})
	if err != nil {
		return fmt.Errorf("delete s3://%s/%s%s: %w", s.bucket, s.prefix, key, classify(err))
	}
	return nil
}

// classify wraps a refusal of the credentials as ErrAccessDenied and a
// certificate the client does not trust as ErrUntrusted.
func classify(err error) error {
	if untrustedCert(err) {
		return fmt.Errorf("%w (check store.ca_file and the endpoint's certificate): %w", ErrUntrusted, err)
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled":
			return fmt.Errorf("%w: %w", ErrAccessDenied, err)
		}
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden {
		return fmt.Errorf("%w: %w", ErrAccessDenied, err)
	}
	return err
}

// untrustedCert reports whether err is a failed verification of the
// server's certificate chain or name.
func untrustedCert(err error) bool {
	var (
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		host      x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &authority) || errors.As(err, &host) || errors.As(err, &invalid)
}
