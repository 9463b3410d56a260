package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fhirlake/internal/testenv"
)

// cleanEnv removes every FHIRLAKE_* variable for the test, so that the
// environment of the machine (a running local stack, say) cannot override
// what the test configures.
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "FHIRLAKE_") {
			t.Setenv(k, v)
			os.Unsetenv(k)
		}
	}
}

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
		err  bool
	}{
		{"512", 512, false}, {"64KiB", 64 << 10, false}, {"64MiB", 64 << 20, false}, {"1GiB", 1 << 30, false},
		{"8MB", 8 << 20, false}, {" 2 GiB ", 2 << 30, false}, {"-1", 0, true}, {"lots", 0, true}, {"99999999999GiB", 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var b ByteSize
			err := b.UnmarshalText([]byte(tc.in))
			if (err != nil) != tc.err || (!tc.err && b != tc.want) {
				t.Fatalf("got %d, %v; want %d, error %v", b, err, tc.want, tc.err)
			}
		})
	}
}

func TestLoadExampleAndLocalStack(t *testing.T) {
	cleanEnv(t)
	t.Setenv("FHIRLAKE_TENANT_ACME_ACCESS_KEY", "a")
	t.Setenv("FHIRLAKE_TENANT_ACME_SECRET_KEY", "b")
	cfg, err := Load(filepath.Join(testenv.RepoRoot(), "deploy", "config", "fhirlake.example.yaml"))
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	if len(cfg.Tenants) != 2 || cfg.Flush.MaxBytes != 64<<20 || cfg.Flush.MaxAge != 5*time.Second {
		t.Fatalf("example config: got %+v", cfg)
	}
	local := filepath.Join(testenv.RepoRoot(), "deploy", "local", "fhirlake.yaml")
	data, err := os.ReadFile(local)
	if err != nil {
		t.Fatal(err)
	}
	var raw Config
	if err := Parse(data, &raw); err != nil {
		t.Fatalf("local stack config: %v", err)
	}
	for _, tn := range raw.Tenants {
		t.Setenv(tn.Store.AccessKeyEnv, "k")
		t.Setenv(tn.Store.SecretKeyEnv, "s")
	}
	if _, err := Load(local); err != nil {
		t.Fatalf("local stack config: %v", err)
	}
}

func TestEnvOverrides(t *testing.T) {
	cleanEnv(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte("kafka:\n  brokers: [a:1]\nflush:\n  max_age: 3s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FHIRLAKE_KAFKA_BROKERS", "x:1,y:2")
	t.Setenv("FHIRLAKE_FLUSH_MAX_BYTES", "8MiB")
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Kafka.Brokers, ",") != "x:1,y:2" || cfg.Flush.MaxBytes != 8<<20 || cfg.Flush.MaxAge != 3*time.Second {
		t.Fatalf("got brokers %v, max_bytes %s, max_age %s", cfg.Kafka.Brokers, cfg.Flush.MaxBytes, cfg.Flush.MaxAge)
	}
}

func TestValidate(t *testing.T) {
	cleanEnv(t)
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown key", "kafka:\n  brokerz: [x]\n", "brokerz"},
		{"no brokers", "kafka:\n  brokers: []\n", "kafka.brokers"},
		{"dlq consumed", "kafka:\n  topics: [a]\n  dead_letter_topic: a\n", "loop"},
		{"bad tenant", "tenants:\n  - name: Acme!\n    store: {type: local, path: /tmp/x}\n", "tenants[0].name"},
		{"shared bucket", "tenants:\n  - name: a\n    store: {type: s3, bucket: b}\n  - name: c\n    store: {type: s3, bucket: b}\n", "never share"},
		{"missing secret env", "tenants:\n  - name: a\n    store: {type: s3, bucket: b, access_key_env: NOPE_A, secret_key_env: NOPE_B}\n", "NOPE_A is not set"},
		{"unknown store", "tenants:\n  - name: a\n    store: {type: ftp}\n", "local or s3"},
		{"topic to unknown tenant", "routing:\n  topics: {t: ghost}\n", "ghost"},
		{"budget below flush", "flush:\n  max_bytes: 64MiB\nmemory:\n  max_buffered_bytes: 1MiB\n", "max_buffered_bytes"},
		{"no topics", "kafka:\n  topics: []\n", "kafka.topics"},
		{"no group", "kafka:\n  group: \"\"\n", "kafka.group: required"},
		{"no dlq", "kafka:\n  dead_letter_topic: \"\"\n", "kafka.dead_letter_topic: required"},
		{"no partitions", "kafka:\n  partitions: 0\n", "kafka.partitions"},
		{"short session", "kafka:\n  session_timeout: 500ms\n", "kafka.session_timeout"},
		{"short rebalance", "kafka:\n  rebalance_timeout: 1s\n", "kafka.rebalance_timeout (1s) is too short"},
		{"no replication", "kafka:\n  replication_factor: 0\n", "kafka.replication_factor"},
		{"no shutdown time", "shutdown_timeout: 0s\n", "shutdown_timeout: must be positive"},
		{"bad audit sql", "audit:\n  sql: hash\n", `audit.sql: "hash" is not full, sha256 or none`},
		{"empty audit path", "audit:\n  path: \"\"\n", "audit.path: empty; use off"},
		{"no routing source", "routing:\n  header: \"\"\n", "configure at least one source"},
		{"bad url pattern", "routing:\n  base_url_pattern: \"(\"\n", "routing.base_url_pattern: error parsing"},
		{"url pattern without tenant", "routing:\n  base_url_pattern: \"^https://\"\n", "(?P<tenant>…)"},
		{"no fetch concurrency", "fetch:\n  concurrency: 0\n", "fetch: concurrency"},
		{"no flush rows", "flush:\n  max_rows: 0\n", "flush.max_rows"},
		{"tiny flush", "flush:\n  max_bytes: 100\n", "flush.max_bytes: must be at least 1KiB"},
		{"hasty flush", "flush:\n  max_age: 1ms\n", "flush.max_age"},
		{"tiny memory limit", "memory:\n  limit: 32MiB\n", "memory.limit: must be 0"},
		{"no work dir", "work_dir: \"\"\n", "work_dir: required"},
		{"bad compact section", "compact:\n  parallelism: 0\n", "compact.parallelism"},
		{"tenant twice", "tenants:\n  - name: a\n    store: {type: local, path: /tmp/a}\n  - name: a\n    store: {type: local, path: /tmp/b}\n", "tenants[1].name: \"a\" appears twice"},
		{"local without path", "tenants:\n  - name: a\n    store: {type: local}\n", "tenants[0] (a).store.path: required"},
		{"shared directory", "tenants:\n  - name: a\n    store: {type: local, path: /tmp/x}\n  - name: b\n    store: {type: local, path: /tmp/x}\n", "is also the store of tenant a"},
		{"s3 without bucket", "tenants:\n  - name: a\n    store: {type: s3}\n", "tenants[0] (a).store.bucket: required"},
		{"half the keys", "tenants:\n  - name: a\n    store: {type: s3, bucket: b, access_key_env: HOME}\n", "set both access_key_env and secret_key_env"},
		{"sts endpoint without a role", "tenants:\n  - name: a\n    store: {type: s3, bucket: b, sts_endpoint: \"http://127.0.0.1:1\"}\n", "sts_endpoint: only used to assume role_arn"},
		{"sts endpoint not a URL", "tenants:\n  - name: a\n    store: {type: s3, bucket: b, role_arn: \"arn:aws:iam::1:role/r\", sts_endpoint: sts.local}\n", `sts_endpoint: "sts.local" must be an http(s) URL`},
		{"kms without key", "tenants:\n  - name: a\n    store: {type: s3, bucket: b, encryption: {mode: sse-kms}}\n", "tenants[0] (a).store.encryption.kms_key_id: required with mode sse-kms"},
		{"key without kms", "tenants:\n  - name: a\n    store: {type: s3, bucket: b, encryption: {mode: sse-s3, kms_key_id: k}}\n", "store.encryption.kms_key_id: only used with mode sse-kms"},
		{"unknown encryption", "tenants:\n  - name: a\n    store: {type: s3, bucket: b, encryption: {mode: AES256}}\n", `store.encryption.mode: "AES256" must be sse-s3 or sse-kms`},
		{"missing ca file", "tenants:\n  - name: a\n    store: {type: s3, bucket: b, ca_file: /nonexistent/ca.pem}\n", "store.ca_file: open /nonexistent/ca.pem: no such file"},
		{"ca file without certificates", "tenants:\n  - name: a\n    store: {type: s3, bucket: b, ca_file: " + filepath.Join(testenv.RepoRoot(), "go.mod") + "}\n", "go.mod holds no PEM certificate"},
		{"encryption of a local store", "tenants:\n  - name: a\n    store: {type: local, path: /tmp/a, encryption: {mode: sse-s3}}\n", "encryption and ca_file apply to an s3 store only"},
		{"fhir not http", "tenants:\n  - name: a\n    store: {type: local, path: /tmp/a}\n    fhir: {base_url: ftp://x}\n", "tenants[0] (a).fhir.base_url"},
		{"fhir token unset", "tenants:\n  - name: a\n    store: {type: local, path: /tmp/a}\n    fhir: {base_url: https://x, token_env: NOPE_T}\n", "tenants[0] (a).fhir.token_env: environment variable NOPE_T is not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestMemoryLimit(t *testing.T) {
	m := Memory{MaxBufferedBytes: 512 << 20}
	if m.Budget() != 512<<20 || m.GoLimit() != 0 || m.EncoderLimit() != 0 {
		t.Errorf("no limit: budget %s, go %d, encoder %d", m.Budget(), m.GoLimit(), m.EncoderLimit())
	}
	m.Limit = 512 << 20
	if m.Budget() != 128<<20 || m.GoLimit() != 320<<20 || m.EncoderLimit() != 128<<20 {
		t.Errorf("512MiB limit: budget %s, go %d, encoder %d", m.Budget(), m.GoLimit(), m.EncoderLimit())
	}
	m.MaxBufferedBytes = 100 << 20
	if m.Budget() != 100<<20 {
		t.Errorf("a smaller max_buffered_bytes wins: budget %s", m.Budget())
	}
	cfg := Default()
	cfg.Tenants = []Tenant{{Name: "acme", Store: Store{Type: "local", Path: t.TempDir()}}}
	cfg.Memory.Limit = 32 << 20
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "memory.limit") {
		t.Errorf("32MiB limit: %v, want a memory.limit error", err)
	}
	cfg.Memory.Limit = 128 << 20 // budget 32MiB < flush.max_bytes 64MiB
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "flush.max_bytes") {
		t.Errorf("128MiB limit with 64MiB flushes: %v, want a flush.max_bytes error", err)
	}
	cfg.Flush.MaxBytes = 16 << 20
	if err := cfg.Validate(); err != nil {
		t.Errorf("128MiB limit with 16MiB flushes: %v", err)
	}
}
