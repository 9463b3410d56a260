package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/benthosdev/benthos/v4/public/bloblang"
	"github.com/benthosdev/benthos/v4/public/service"

	"fhirlake/config"
	"fhirlake/notification"
	"fhirlake/synth"
)

// The Benthos pipeline must extract from every record the same columns
// fhirlake's decoder does, so that both write the same rows.
func TestBenthosMappingMatchesDecoder(t *testing.T) {
	exe, err := bloblang.Parse(benthosMapping)
	if err != nil {
		t.Fatal(err)
	}
	gen, err := synth.New(synth.Options{
		Tenants: []string{"acme", "globex"}, Patients: 20, Seed: 9, UpdateRatio: 0.5, DeleteRatio: 0.5,
		Formats: []synth.Format{synth.FormatR4Backport, synth.FormatR5, synth.FormatR4BHistory},
	})
	if err != nil {
		t.Fatal(err)
	}
	deletes := 0
	for i := 0; ; i++ {
		r, ok := gen.Next()
		if !ok {
			break
		}
		if r.Kind != synth.KindEvent {
			continue
		}
		n, err := notification.Decode(r.Value)
		if err != nil || len(n.Events) != 1 {
			t.Fatalf("record %d: decode: %v", i, err)
		}
		ev := n.Events[0]
		msg := service.NewMessage(r.Value)
		msg.MetaSetMut("fhir-tenant", r.Tenant)
		msg.MetaSetMut("kafka_topic", "t")
		msg.MetaSetMut("kafka_partition", 3)
		msg.MetaSetMut("kafka_offset", i)
		out, err := msg.BloblangQuery(exe)
		if err != nil {
			t.Fatalf("record %d: mapping: %v\n%s", i, err, r.Value)
		}
		v, err := out.AsStructured()
		if err != nil {
			t.Fatal(err)
		}
		row := v.(map[string]any)
		lu, _ := row["last_updated"].(int64)
		if row["tenant"] != r.Tenant || row["resource_type"] != ev.ResourceType || row["id"] != ev.ID ||
			row["version_id"] != ev.VersionID || row["operation"] != string(ev.Operation) || lu != ev.LastUpdated.UnixMicro() {
			t.Fatalf("record %d: mapping %v, decoder %s %s/%s v%s %s", i, row, ev.Operation, ev.ResourceType, ev.ID, ev.VersionID, ev.LastUpdated.Format(time.RFC3339Nano))
		}
		if ev.Resource == nil {
			deletes++
			if row["resource"] != nil {
				t.Fatalf("record %d: a delete kept a resource", i)
			}
		} else if res, ok := row["resource"].(string); !ok || !json.Valid([]byte(res)) {
			t.Fatalf("record %d: resource %v", i, row["resource"])
		}
	}
	if deletes == 0 {
		t.Fatal("no deletes in the sample")
	}
}

func TestBenthosConfigLints(t *testing.T) {
	t.Setenv("BENCH_KAFKA_USER", "u")
	t.Setenv("BENCH_KAFKA_PASSWORD", "p")
	secured := config.Kafka{
		TLS:  config.KafkaTLS{Enabled: true, CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem"},
		SASL: config.KafkaSASL{Mechanism: config.SASLScramSHA512, UsernameEnv: "BENCH_KAFKA_USER", PasswordEnv: "BENCH_KAFKA_PASSWORD"},
	}
	for name, k := range map[string]config.Kafka{"plaintext": {}, "tls and scram": secured} {
		t.Run(name, func(t *testing.T) {
			sb := service.NewStreamBuilder()
			c, err := benthosConfig(benthosOptions{Brokers: []string{"127.0.0.1:1"}, Kafka: k, Topic: "t", Group: "g", Bucket: "b", Prefix: "p", Endpoint: "http://127.0.0.1:1", Region: "us-east-1",
				AccessKey: "a", SecretKey: "s", BatchCount: 100000, BatchBytes: 64 << 20, BatchPeriod: 5 * time.Second, CheckpointLimit: 200000})
			if err != nil {
				t.Fatal(err)
			}
			if err := sb.SetYAML(c); err != nil {
				t.Fatalf("%v\n%s", err, c)
			}
			if k.Secured() && (!strings.Contains(c, "mechanism: SCRAM-SHA-512") || !strings.Contains(c, `root_cas_file: "/ca.pem"`) || strings.Contains(c, "password: p")) {
				t.Fatalf("the input lacks TLS and SASL, or holds the password itself:\n%s", c)
			}
		})
	}
	if _, err := benthosConfig(benthosOptions{Kafka: config.Kafka{SASL: config.KafkaSASL{Mechanism: config.SASLAWSMSKIAM}}}); err == nil {
		t.Error("MSK IAM accepted for Benthos")
	}
}
