package config

import (
	"strings"
	"testing"
	"time"
)

func TestReceiveDefaults(t *testing.T) {
	r := Receive{}.WithDefaults(Kafka{Topics: []string{"fhir.in", "other"}})
	if r.Listen != "127.0.0.1:8090" || r.Topic != "fhir.in" || r.SecretHeader != "X-Fhirlake-Secret" ||
		r.MaxRequestBytes != MaxReceiveBytes || r.MaxConcurrent != 64 || r.ProduceTimeout != 10*time.Second {
		t.Fatalf("defaults: %+v", r)
	}
	r.Secrets = []ReceiveSecret{{Tenant: "acme", SecretSHA256: HashAPIKey("s")}}
	if err := r.Validate([]Tenant{{Name: "acme"}}); err != nil {
		t.Fatal(err)
	}
}

func TestReceiveValidate(t *testing.T) {
	good := HashAPIKey("secret")
	r := Receive{
		Topic: "", SecretHeader: "X Secret", MaxRequestBytes: 32 << 20, MaxConcurrent: -1, ProduceTimeout: time.Millisecond,
		Secrets: []ReceiveSecret{
			{Tenant: "ghost", SecretSHA256: good},
			{Tenant: "acme", SecretSHA256: "ABC"},
			{Tenant: "globex", SecretSHA256: good},
		},
	}.WithDefaults(Kafka{})
	err := r.Validate([]Tenant{{Name: "acme"}, {Name: "globex"}})
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{
		"receive.topic: required",
		`receive.secret_header: "X Secret" is not an HTTP header name`,
		"receive.max_request_bytes: must be between 1KiB and",
		"receive.max_concurrent: must be positive",
		"receive.produce_timeout: must be at least 100ms",
		`receive.secrets[0].tenant: "ghost" is not a configured tenant`,
		"receive.secrets[1].secret_sha256: want 64 lowercase hex digits",
		"receive.secrets[2].secret_sha256: the same secret also opens tenant ghost",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if err := (Receive{}).WithDefaults(Kafka{Topics: []string{"t"}}).Validate(nil); err == nil || !strings.Contains(err.Error(), "receive.secrets: none configured") {
		t.Errorf("no secrets: %v", err)
	}
}
