package config

import (
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
)

// KafkaTLS configures TLS to the brokers.
type KafkaTLS struct {
	// Enabled dials every broker with TLS. Default: false (plaintext).
	Enabled bool `yaml:"enabled" env:"ENABLED"`
	// CAFile is a PEM bundle of the certificate authorities that sign the
	// brokers' certificates. Empty: the system's roots (MSK, Confluent
	// Cloud).
	CAFile string `yaml:"ca_file" env:"CA_FILE"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// brokers that authenticate clients by certificate (mTLS). Both or
	// neither.
	CertFile string `yaml:"cert_file" env:"CERT_FILE"`
	KeyFile  string `yaml:"key_file" env:"KEY_FILE"`
	// ServerName is the name the brokers' certificates must carry. Empty:
	// the host of each broker's address.
	ServerName string `yaml:"server_name" env:"SERVER_NAME"`
}

// KafkaSASL configures SASL authentication to the brokers. Secrets are
// never written in the file: it names the environment variables that hold
// them, as a tenant's store does.
type KafkaSASL struct {
	// Mechanism is one of plain, scram-sha-256, scram-sha-512, oauthbearer
	// or aws-msk-iam. Empty: no SASL.
	Mechanism string `yaml:"mechanism" env:"MECHANISM"`
	// UsernameEnv and PasswordEnv name the environment variables holding
	// the user and password of plain and scram-*.
	UsernameEnv string `yaml:"username_env" env:"USERNAME_ENV"`
	PasswordEnv string `yaml:"password_env" env:"PASSWORD_ENV"`
	// TokenFile, for oauthbearer, is a file holding the bearer token,
	// read again for every connection so that whoever renews it (a
	// sidecar, a projected service-account token) need not restart
	// fhirlake. Either it or oauth.token_url.
	TokenFile string `yaml:"token_file" env:"TOKEN_FILE"`
	// OAuth, for oauthbearer, gets tokens from an OAuth 2.0 token endpoint
	// with the client-credentials grant, renewing them before they expire.
	OAuth KafkaOAuth `yaml:"oauth" envPrefix:"OAUTH_"`
	// AWS, for aws-msk-iam, is where the AWS credentials come from.
	AWS KafkaAWS `yaml:"aws" envPrefix:"AWS_"`
}

// KafkaOAuth is an OAuth 2.0 client-credentials grant.
type KafkaOAuth struct {
	// TokenURL is the token endpoint, e.g.
	// https://idp.example.org/oauth2/token.
	TokenURL string `yaml:"token_url" env:"TOKEN_URL"`
	// ClientIDEnv and ClientSecretEnv name the environment variables
	// holding the client's id and secret.
	ClientIDEnv     string `yaml:"client_id_env" env:"CLIENT_ID_ENV"`
	ClientSecretEnv string `yaml:"client_secret_env" env:"CLIENT_SECRET_ENV"`
	// Scopes requested with each token. Default: none.
	Scopes []string `yaml:"scopes" env:"SCOPES" envSeparator:","`
}

// KafkaAWS gives the credentials of aws-msk-iam: the default AWS chain
// (environment, web identity, instance role), then role_arn when set.
// Requests are signed for the region in the broker's MSK host name, else
// $AWS_REGION.
type KafkaAWS struct {
	// Region of the STS endpoint and of the default chain. Default: the
	// chain's own ($AWS_REGION, the profile).
	Region string `yaml:"region" env:"REGION"`
	// RoleARN is a role assumed for the cluster. Empty: the chain's
	// identity itself.
	RoleARN string `yaml:"role_arn" env:"ROLE_ARN"`
	// ExternalID is sent with the AssumeRole call when set.
	ExternalID string `yaml:"external_id" env:"EXTERNAL_ID"`
	// STSEndpoint is the STS endpoint role_arn is assumed through.
	// Default: AWS's regional STS.
	STSEndpoint string `yaml:"sts_endpoint" env:"STS_ENDPOINT"`
}

// SASL mechanisms, as kafka.sasl.mechanism names them.
const (
	SASLPlain        = "plain"
	SASLScramSHA256  = "scram-sha-256"
	SASLScramSHA512  = "scram-sha-512"
	SASLOAuthBearer  = "oauthbearer"
	SASLAWSMSKIAM    = "aws-msk-iam"
	saslMechanismSet = SASLPlain + ", " + SASLScramSHA256 + ", " + SASLScramSHA512 + ", " + SASLOAuthBearer + ", " + SASLAWSMSKIAM
)

// Secured says whether the connection to the brokers uses TLS or SASL.
func (k Kafka) Secured() bool { return k.TLS.Enabled || k.SASL.Mechanism != "" }

// validate checks the TLS settings: files only with TLS on, a certificate
// with its key. The files themselves are read when a client is built
// (kafkaconn.Options): they are often mounted only where fhirlake runs.
func (t KafkaTLS) validate(p *problems) {
	if !t.Enabled {
		for _, f := range []struct{ key, v string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"server_name", t.ServerName}} {
			if f.v != "" {
				p.add("kafka.tls.%s: set, but kafka.tls.enabled is false", f.key)
			}
		}
		return
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		p.add("kafka.tls: set both cert_file and key_file (a client certificate and its key), or neither")
	}
}

// validate checks that the mechanism is known, that it has what it needs,
// that every environment variable it names is set, and that no setting of
// another mechanism is given (it would be ignored).
func (s KafkaSASL) validate(p *problems, tls KafkaTLS) {
	type setting struct{ key, v string }
	var need, forbid []setting
	userPass := []setting{{"username_env", s.UsernameEnv}, {"password_env", s.PasswordEnv}}
	tokenFile := []setting{{"token_file", s.TokenFile}}
	oauth := []setting{{"oauth.token_url", s.OAuth.TokenURL}, {"oauth.client_id_env", s.OAuth.ClientIDEnv}, {"oauth.client_secret_env", s.OAuth.ClientSecretEnv}}
	if len(s.OAuth.Scopes) > 0 {
		oauth = append(oauth, setting{"oauth.scopes", strings.Join(s.OAuth.Scopes, ",")})
	}
	aws := []setting{{"aws.region", s.AWS.Region}, {"aws.role_arn", s.AWS.RoleARN}, {"aws.external_id", s.AWS.ExternalID}, {"aws.sts_endpoint", s.AWS.STSEndpoint}}
	switch s.Mechanism {
	case "":
		forbid = slices.Concat(userPass, tokenFile, oauth, aws)
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		need = userPass
		forbid = slices.Concat(tokenFile, oauth, aws)
	case SASLOAuthBearer:
		forbid = slices.Concat(userPass, aws)
		switch {
		case s.TokenFile != "" && s.OAuth.TokenURL != "":
			p.add("kafka.sasl: oauthbearer takes its token from token_file or from oauth.token_url, not both")
		case s.TokenFile == "" && s.OAuth.TokenURL == "":
			p.add("kafka.sasl: oauthbearer needs token_file or oauth.token_url")
		case s.TokenFile != "":
			forbid = append(forbid, oauth...)
		default:
			need = oauth[:3]
			if u, err := url.Parse(s.OAuth.TokenURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				p.add("kafka.sasl.oauth.token_url: %q must be an http(s) URL", s.OAuth.TokenURL)
			}
		}
	case SASLAWSMSKIAM:
		forbid = slices.Concat(userPass, tokenFile, oauth)
		if !tls.Enabled {
			p.add("kafka.sasl: aws-msk-iam needs kafka.tls.enabled: MSK's IAM listener takes TLS only")
		}
		if s.AWS.RoleARN == "" {
			for _, f := range aws[2:] {
				if f.v != "" {
					p.add("kafka.sasl.%s: only used to assume aws.role_arn, which is not set", f.key)
				}
			}
		}
		if e := s.AWS.STSEndpoint; e != "" {
			if u, err := url.Parse(e); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				p.add("kafka.sasl.aws.sts_endpoint: %q must be an http(s) URL", e)
			}
		}
	default:
		p.add("kafka.sasl.mechanism: %q is not one of %s", s.Mechanism, saslMechanismSet)
		return
	}
	for _, f := range need {
		if f.v == "" {
			p.add("kafka.sasl.%s: required with mechanism %s", f.key, s.Mechanism)
		} else if strings.HasSuffix(f.key, "_env") && os.Getenv(f.v) == "" {
			p.add("kafka.sasl.%s: environment variable %s is not set", f.key, f.v)
		}
	}
	for _, f := range forbid {
		if f.v != "" {
			p.add("kafka.sasl.%s: %s", f.key, notUsedBy(s.Mechanism))
		}
	}
}

func notUsedBy(mechanism string) string {
	if mechanism == "" {
		return "set, but kafka.sasl.mechanism is not"
	}
	return fmt.Sprintf("not used by mechanism %s", mechanism)
}
