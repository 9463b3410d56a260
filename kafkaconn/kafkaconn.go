// Package kafkaconn turns the configuration's kafka section into the
// connection options every Kafka client of fhirlake starts from — seed
// brokers, client id, TLS and SASL — and tells the failures that retrying
// cannot cure (credentials refused, a certificate not trusted) from those
// it can, so that a command ends on the first with one clear error instead
// of retrying forever.
package kafkaconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	kaws "github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"fhirlake/config"
)

// tokenTimeout bounds one request to an OAuth token endpoint.
const tokenTimeout = 10 * time.Second

// Options returns the options every client of the cluster k describes
// starts from: the seed brokers, the client id, TLS and SASL. The CA
// bundle, the client certificate and the secrets are read now, so that a
// missing or malformed one fails here, naming it, before any connection.
// Callers append their own options; a later kgo.ClientID overrides k's.
func Options(ctx context.Context, k config.Kafka) ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(k.Brokers...)}
	if k.ClientID != "" {
		opts = append(opts, kgo.ClientID(k.ClientID))
	}
	if k.TLS.Enabled {
		tc, err := tlsConfig(k.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if k.SASL.Mechanism != "" {
		m, err := mechanism(ctx, k.SASL)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

// tlsConfig is TLS 1.2 or later, trusting ca_file (else the system's
// roots), presenting cert_file when set. The client certificate is read
// again for every connection, so that a renewed one (cert-manager, say)
// is used without a restart.
func tlsConfig(t config.KafkaTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.ca_file: %s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		load := func() (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("kafka.tls.cert_file, key_file: %w", err)
			}
			return &c, nil
		}
		if _, err := load(); err != nil {
			return nil, err
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return load() }
	}
	return tc, nil
}

// secret is the value of the environment variable key names.
func secret(key, name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("kafka.sasl.%s: required", key)
	}
	v := os.Getenv(name)
	if v == "" {
		return "", fmt.Errorf("kafka.sasl.%s: environment variable %s is not set", key, name)
	}
	return v, nil
}

// mechanism is franz-go's own SASL mechanism for s.
func mechanism(ctx context.Context, s config.KafkaSASL) (sasl.Mechanism, error) {
	switch s.Mechanism {
	case config.SASLPlain, config.SASLScramSHA256, config.SASLScramSHA512:
		user, err := secret("username_env", s.UsernameEnv)
		if err != nil {
			return nil, err
		}
		pass, err := secret("password_env", s.PasswordEnv)
		if err != nil {
			return nil, err
		}
		switch s.Mechanism {
		case config.SASLPlain:
			return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
		case config.SASLScramSHA256:
			return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
		default:
			return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
		}
	case config.SASLOAuthBearer:
		if s.TokenFile != "" {
			return tokenFile(s.TokenFile)
		}
		return clientCredentials(s.OAuth)
	case config.SASLAWSMSKIAM:
		return mskIAM(ctx, s.AWS)
	default:
		return nil, fmt.Errorf("kafka.sasl.mechanism: %q is not supported", s.Mechanism)
	}
}

// tokenFile is OAUTHBEARER with the token in path, read for every
// connection (and now, to fail early).
func tokenFile(path string) (sasl.Mechanism, error) {
	read := func() (oauth.Auth, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return oauth.Auth{}, fmt.Errorf("kafka.sasl.token_file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return oauth.Auth{}, fmt.Errorf("kafka.sasl.token_file: %s is empty", path)
		}
		return oauth.Auth{Token: tok}, nil
	}
	if _, err := read(); err != nil {
		return nil, err
	}
	return oauth.Oauth(func(context.Context) (oauth.Auth, error) { return read() }), nil
}

// clientCredentials is OAUTHBEARER with tokens from o's endpoint. The
// token source keeps a token until shortly before it expires, so a new
// connection asks the endpoint only for a new token.
func clientCredentials(o config.KafkaOAuth) (sasl.Mechanism, error) {
	id, err := secret("oauth.client_id_env", o.ClientIDEnv)
	if err != nil {
		return nil, err
	}
	sec, err := secret("oauth.client_secret_env", o.ClientSecretEnv)
	if err != nil {
		return nil, err
	}
	cc := clientcredentials.Config{ClientID: id, ClientSecret: sec, TokenURL: o.TokenURL, Scopes: o.Scopes}
	// The source outlives any one request: its context only carries the
	// HTTP client, with a timeout of its own.
	hctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: tokenTimeout})
	src := cc.TokenSource(hctx)
	return oauth.Oauth(func(context.Context) (oauth.Auth, error) {
		tok, err := src.Token()
		if err != nil {
			return oauth.Auth{}, fmt.Errorf("kafka.sasl.oauth: token from %s: %w", o.TokenURL, err)
		}
		return oauth.Auth{Token: tok.AccessToken}, nil
	}), nil
}

// credentialsExpiryWindow renews AWS credentials this long before they
// expire, so that a connection never signs with credentials about to end.
const credentialsExpiryWindow = 5 * time.Minute

// mskIAM is AWS_MSK_IAM with credentials from the default AWS chain, then
// a.role_arn when set, cached and renewed before they expire.
func mskIAM(ctx context.Context, a config.KafkaAWS) (sasl.Mechanism, error) {
	var lo []func(*awsconfig.LoadOptions) error
	if a.Region != "" {
		lo = append(lo, awsconfig.WithRegion(a.Region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, lo...)
	if err != nil {
		return nil, fmt.Errorf("kafka.sasl.aws: %w", err)
	}
	creds := cfg.Credentials
	if a.RoleARN != "" {
		client := sts.NewFromConfig(cfg, func(so *sts.Options) {
			if a.STSEndpoint != "" {
				so.BaseEndpoint = aws.String(a.STSEndpoint)
			}
		})
		creds = stscreds.NewAssumeRoleProvider(client, a.RoleARN, func(ao *stscreds.AssumeRoleOptions) {
			ao.RoleSessionName = "fhirlake-kafka"
			if a.ExternalID != "" {
				ao.ExternalID = aws.String(a.ExternalID)
			}
		})
	}
	if creds == nil {
		return nil, errors.New("kafka.sasl.aws: the default AWS chain found no credentials")
	}
	cache := aws.NewCredentialsCache(creds, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = credentialsExpiryWindow })
	return kaws.ManagedStreamingIAM(func(ctx context.Context) (kaws.Auth, error) {
		c, err := cache.Retrieve(ctx)
		if err != nil {
			return kaws.Auth{}, fmt.Errorf("kafka.sasl.aws: credentials: %w", err)
		}
		return kaws.Auth{AccessKey: c.AccessKeyID, SecretKey: c.SecretAccessKey, SessionToken: c.SessionToken}, nil
	}), nil
}
