package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKafkaSecurityValidation: every mechanism with what it needs is
// accepted; a missing secret, a setting of another mechanism, a
// certificate without its key are refused, naming the key at fault.
func TestKafkaSecurityValidation(t *testing.T) {
	cleanEnv(t)
	t.Setenv("KAFKA_USER", "fhirlake")
	t.Setenv("KAFKA_PASSWORD", "secret")
	os.Unsetenv("KAFKA_UNSET")
	for _, c := range []struct {
		name, yaml string
		want       string // "" when accepted
	}{
		{"none", "", ""},
		{"tls with a CA", "tls: {enabled: true, ca_file: /ca.pem, server_name: kafka.example}", ""},
		{"mutual tls", "tls: {enabled: true, cert_file: /c.pem, key_file: /k.pem}", ""},
		{"scram over tls", "tls: {enabled: true}\n  sasl: {mechanism: scram-sha-512, username_env: KAFKA_USER, password_env: KAFKA_PASSWORD}", ""},
		{"plain", "sasl: {mechanism: plain, username_env: KAFKA_USER, password_env: KAFKA_PASSWORD}", ""},
		{"oauth token file", "sasl: {mechanism: oauthbearer, token_file: /var/run/token}", ""},
		{"oauth client credentials", "sasl: {mechanism: oauthbearer, oauth: {token_url: https://idp/token, client_id_env: KAFKA_USER, client_secret_env: KAFKA_PASSWORD, scopes: [kafka]}}", ""},
		{"msk iam", "tls: {enabled: true}\n  sasl: {mechanism: aws-msk-iam, aws: {region: eu-west-1, role_arn: 'arn:aws:iam::1:role/r'}}", ""},

		{"certificate without key", "tls: {enabled: true, cert_file: /c.pem}", "kafka.tls: set both cert_file and key_file"},
		{"tls file without tls", "tls: {ca_file: /ca.pem}", "kafka.tls.ca_file: set, but kafka.tls.enabled is false"},
		{"unknown mechanism", "sasl: {mechanism: SCRAM-SHA-512}", `kafka.sasl.mechanism: "SCRAM-SHA-512" is not one of plain, scram-sha-256`},
		{"missing secret", "sasl: {mechanism: scram-sha-256, username_env: KAFKA_USER, password_env: KAFKA_UNSET}", "kafka.sasl.password_env: environment variable KAFKA_UNSET is not set"},
		{"no username", "sasl: {mechanism: plain, password_env: KAFKA_PASSWORD}", "kafka.sasl.username_env: required with mechanism plain"},
		{"user without mechanism", "sasl: {username_env: KAFKA_USER}", "kafka.sasl.username_env: set, but kafka.sasl.mechanism is not"},
		{"token file with scram", "sasl: {mechanism: scram-sha-512, username_env: KAFKA_USER, password_env: KAFKA_PASSWORD, token_file: /t}", "kafka.sasl.token_file: not used by mechanism scram-sha-512"},
		{"oauth without a source", "sasl: {mechanism: oauthbearer}", "oauthbearer needs token_file or oauth.token_url"},
		{"oauth with both sources", "sasl: {mechanism: oauthbearer, token_file: /t, oauth: {token_url: https://idp}}", "not both"},
		{"oauth missing client secret", "sasl: {mechanism: oauthbearer, oauth: {token_url: https://idp/token, client_id_env: KAFKA_USER, client_secret_env: KAFKA_UNSET}}", "kafka.sasl.oauth.client_secret_env: environment variable KAFKA_UNSET is not set"},
		{"oauth bad url", "sasl: {mechanism: oauthbearer, oauth: {token_url: idp/token, client_id_env: KAFKA_USER, client_secret_env: KAFKA_PASSWORD}}", `kafka.sasl.oauth.token_url: "idp/token" must be an http(s) URL`},
		{"msk iam without tls", "sasl: {mechanism: aws-msk-iam}", "aws-msk-iam needs kafka.tls.enabled"},
		{"msk external id without role", "tls: {enabled: true}\n  sasl: {mechanism: aws-msk-iam, aws: {external_id: x}}", "kafka.sasl.aws.external_id: only used to assume aws.role_arn"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(p, []byte("kafka:\n  "+c.yaml+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}

// TestKafkaSecurityFromEnvironment: the security settings have FHIRLAKE_*
// overrides like every other key.
func TestKafkaSecurityFromEnvironment(t *testing.T) {
	cleanEnv(t)
	t.Setenv("KAFKA_USER", "fhirlake")
	t.Setenv("KAFKA_PASSWORD", "secret")
	t.Setenv("FHIRLAKE_KAFKA_TLS_ENABLED", "true")
	t.Setenv("FHIRLAKE_KAFKA_TLS_CA_FILE", "/etc/kafka/ca.pem")
	t.Setenv("FHIRLAKE_KAFKA_SASL_MECHANISM", "scram-sha-512")
	t.Setenv("FHIRLAKE_KAFKA_SASL_USERNAME_ENV", "KAFKA_USER")
	t.Setenv("FHIRLAKE_KAFKA_SASL_PASSWORD_ENV", "KAFKA_PASSWORD")
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.Kafka
	if !k.TLS.Enabled || k.TLS.CAFile != "/etc/kafka/ca.pem" || k.SASL.Mechanism != SASLScramSHA512 || k.SASL.PasswordEnv != "KAFKA_PASSWORD" {
		t.Fatalf("got tls %+v, sasl %+v", k.TLS, k.SASL)
	}
}
