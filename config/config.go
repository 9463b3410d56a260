// Package config loads and validates the fhirlake configuration: one YAML
// file, overridden by FHIRLAKE_* environment variables. Secrets are never
// written in the file; the file names the environment variables that hold them.
package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"gopkg.in/yaml.v3"
)

// Config is the whole configuration of one fhirlake process.
type Config struct {
	// Kafka is where notifications come from.
	Kafka Kafka `yaml:"kafka" envPrefix:"FHIRLAKE_KAFKA_"`
	// Routing decides which tenant a record belongs to.
	Routing Routing `yaml:"routing"`
	// Flush bounds each buffer: whichever limit is reached first flushes it.
	Flush Flush `yaml:"flush" envPrefix:"FHIRLAKE_FLUSH_"`
	// Memory bounds what all buffers together may hold.
	Memory Memory `yaml:"memory" envPrefix:"FHIRLAKE_MEMORY_"`
	// Fetch bounds reads of id-only payloads from tenants' FHIR servers.
	Fetch Fetch `yaml:"fetch" envPrefix:"FHIRLAKE_FETCH_"`
	// Metrics is the Prometheus endpoint.
	Metrics Metrics `yaml:"metrics" envPrefix:"FHIRLAKE_METRICS_"`
	// ShutdownTimeout bounds the final flush and commit after SIGTERM; what
	// is not durable by then is replayed by the next owner. Keep it below
	// the orchestrator's grace period. Default: 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout" env:"FHIRLAKE_SHUTDOWN_TIMEOUT"`
	// WorkDir holds temporary Parquet files before they are uploaded or
	// renamed into place. Default: .fhirlake/work.
	WorkDir string `yaml:"work_dir" env:"FHIRLAKE_WORK_DIR"`
	// ViewsDir holds SQL-on-FHIR ViewDefinition files (*.json) that replace
	// the embedded default view of the same name or add new views. Empty:
	// the defaults only.
	ViewsDir string `yaml:"views_dir" env:"FHIRLAKE_VIEWS_DIR"`
	// Compact configures the batch layer (`fhirlake compact`).
	Compact Compact `yaml:"compact" envPrefix:"FHIRLAKE_COMPACT_"`
	// Serve configures `fhirlake serve`, the SQL API and status page.
	Serve Serve `yaml:"serve" envPrefix:"FHIRLAKE_SERVE_"`
	// Receive configures `fhirlake receive`, the rest-hook endpoint.
	Receive Receive `yaml:"receive" envPrefix:"FHIRLAKE_RECEIVE_"`
	// Audit is the audit trail of queries, compactions and erasures.
	Audit Audit `yaml:"audit" envPrefix:"FHIRLAKE_AUDIT_"`
	// Iceberg is the deployment's Iceberg catalog (`fhirlake register`).
	Iceberg Iceberg `yaml:"iceberg" envPrefix:"FHIRLAKE_ICEBERG_"`
	// Tenants lists every tenant this deployment serves. Records for any
	// other tenant are dead-lettered: there is no default tenant.
	Tenants []Tenant `yaml:"tenants"`
}

// Kafka configures the consumer group and the dead-letter topic.
type Kafka struct {
	// Brokers are the seed brokers, host:port. Default: 127.0.0.1:19092.
	Brokers []string `yaml:"brokers" env:"BROKERS" envSeparator:","`
	// Topics are consumed by the group. Default: fhir.notifications.
	Topics []string `yaml:"topics" env:"TOPICS" envSeparator:","`
	// Group is the consumer group id. Default: fhirlake.
	Group string `yaml:"group" env:"GROUP"`
	// DeadLetterTopic receives every record that cannot become rows, with
	// its reason in headers. Default: fhir.deadletter.
	DeadLetterTopic string `yaml:"dead_letter_topic" env:"DEAD_LETTER_TOPIC"`
	// ClientID identifies this process to the brokers. Default: fhirlake.
	ClientID string `yaml:"client_id" env:"CLIENT_ID"`
	// Partitions is used when fhirlake creates a missing topic. Default: 6.
	Partitions int32 `yaml:"partitions" env:"PARTITIONS"`
	// SessionTimeout is how long the group waits for a silent member before
	// giving its partitions to others; shorter means faster recovery after a
	// crash, longer tolerates pauses. Default: 45s.
	SessionTimeout time.Duration `yaml:"session_timeout" env:"SESSION_TIMEOUT"`
	// RebalanceTimeout bounds how long a member may take to flush and
	// commit revoked partitions during a rebalance. Default: 60s.
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout" env:"REBALANCE_TIMEOUT"`
	// ReplicationFactor is used when fhirlake creates a missing topic.
	// Default: 1 (a single-node development broker); use 3 in production.
	ReplicationFactor int16 `yaml:"replication_factor" env:"REPLICATION_FACTOR"`
	// TLS to the brokers (kafka.go). Default: plaintext.
	TLS KafkaTLS `yaml:"tls" envPrefix:"TLS_"`
	// SASL authentication to the brokers (kafka.go). Default: none.
	SASL KafkaSASL `yaml:"sasl" envPrefix:"SASL_"`
}

// Routing is the tenant resolution chain. Every configured source is
// consulted: the Kafka header, the topic map, the payload's tenant fields,
// the base URL of the resources and subscription, and a meta.tag. All
// answers must agree; disagreement or no answer dead-letters the record.
type Routing struct {
	// Header is the Kafka record header naming the tenant. Default: fhir-tenant.
	Header string `yaml:"header" env:"FHIRLAKE_ROUTING_HEADER"`
	// Topics maps a topic to the tenant that owns all of it.
	Topics map[string]string `yaml:"topics"`
	// PayloadFields trusts tenant fields carried in the payload: an IBM
	// event's tenantId and a HAPI message's partitionId. Default: false.
	PayloadFields bool `yaml:"payload_fields" env:"FHIRLAKE_ROUTING_PAYLOAD_FIELDS"`
	// BaseURLPattern is a regular expression over the FHIR base URLs of the
	// notification (entries' fullUrl, the subscription reference) with a
	// named group "tenant", e.g. ^https://fhir\.(?P<tenant>[a-z0-9-]+)\.example\.org/.
	// Empty: not consulted.
	BaseURLPattern string `yaml:"base_url_pattern" env:"FHIRLAKE_ROUTING_BASE_URL_PATTERN"`
	// TagSystem is the meta.tag system whose code names the tenant. Empty:
	// not consulted.
	TagSystem string `yaml:"tag_system" env:"FHIRLAKE_ROUTING_TAG_SYSTEM"`
}

// Fetch configures reads of id-only notifications' resources from the
// tenant's FHIR server.
type Fetch struct {
	// Concurrency bounds requests in flight per process. Default: 8.
	Concurrency int `yaml:"concurrency" env:"CONCURRENCY"`
	// RatePerSecond bounds requests per second per process. Default: 50.
	RatePerSecond float64 `yaml:"rate_per_second" env:"RATE_PER_SECOND"`
	// Timeout bounds one request. Default: 10s.
	Timeout time.Duration `yaml:"timeout" env:"TIMEOUT"`
	// MaxRetries for 429, 5xx and network errors, with exponential backoff.
	// Default: 4.
	MaxRetries int `yaml:"max_retries" env:"MAX_RETRIES"`
}

// FHIRServer is a tenant's FHIR server, read for id-only notifications.
type FHIRServer struct {
	// BaseURL such as https://fhir.acme.example.org/fhir. Empty: id-only
	// notifications of this tenant are dead-lettered.
	BaseURL string `yaml:"base_url"`
	// TokenEnv names the environment variable holding a bearer token.
	TokenEnv string `yaml:"token_env"`
}

// Flush limits one buffer (one Kafka partition's pending rows).
type Flush struct {
	// MaxRows flushes a buffer holding this many rows. Default: 100000.
	MaxRows int `yaml:"max_rows" env:"MAX_ROWS"`
	// MaxBytes flushes a buffer holding this many bytes of notifications.
	// Default: 64MiB. Larger files are cheaper to query; memory grows with it.
	MaxBytes ByteSize `yaml:"max_bytes" env:"MAX_BYTES"`
	// MaxAge flushes a buffer whose oldest record waited this long. It bounds
	// freshness when traffic is low. Default: 5s.
	MaxAge time.Duration `yaml:"max_age" env:"MAX_AGE"`
}

// Memory bounds the process.
type Memory struct {
	// MaxBufferedBytes is the budget for all buffers together; beyond it the
	// consumer pauses fetching until flushes free memory. Default: 512MiB.
	MaxBufferedBytes ByteSize `yaml:"max_buffered_bytes" env:"MAX_BUFFERED_BYTES"`
	// Limit is the memory the consumer process may use in all (0: not
	// managed). When set, the Go runtime gets a soft limit of 5/8 of it
	// (unless GOMEMLIMIT is set), the Parquet encoder's DuckDB a memory
	// limit of 1/4, and the buffers' budget is at most 1/4 of it; the last
	// eighth is for what neither accounts for (the program itself, thread
	// stacks, the C allocator). The budget is kept well under the Go share
	// because fetched records and garbage live beside it: with the budget at
	// 3/8 the garbage collector ran nearly without pause and cost 50% more
	// CPU.
	Limit ByteSize `yaml:"limit" env:"LIMIT"`
}

// MinMemoryLimit is the smallest memory.limit accepted.
const MinMemoryLimit = 64 << 20

// Budget is the buffers' budget in effect: max_buffered_bytes, capped at
// 1/4 of limit when a limit is set.
func (m Memory) Budget() ByteSize {
	if m.Limit > 0 {
		return min(m.MaxBufferedBytes, m.Limit/4)
	}
	return m.MaxBufferedBytes
}

// GoLimit is the Go runtime's soft memory limit implied by limit (0: none).
func (m Memory) GoLimit() int64 { return int64(m.Limit) * 5 / 8 }

// EncoderLimit is the memory limit of the Parquet encoder's DuckDB implied
// by limit (0: DuckDB's default).
func (m Memory) EncoderLimit() int64 { return int64(m.Limit) / 4 }

// EncoderMemoryLimit is EncoderLimit as a DuckDB memory_limit setting, ""
// when no limit is set.
func (m Memory) EncoderMemoryLimit() string {
	if l := m.EncoderLimit(); l > 0 {
		return fmt.Sprintf("%dMiB", max(l>>20, 1))
	}
	return ""
}

// ApplyGoLimit gives the Go runtime GoLimit as its soft memory limit,
// unless no limit is set or GOMEMLIMIT already sets one; it reports
// whether it did.
func (m Memory) ApplyGoLimit() bool {
	if m.Limit <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return false
	}
	debug.SetMemoryLimit(m.GoLimit())
	return true
}

// Metrics configures the HTTP endpoint serving /metrics, /healthz and /readyz.
type Metrics struct {
	// Listen is host:port; empty disables the endpoint. Default: 127.0.0.1:9464.
	Listen string `yaml:"listen" env:"LISTEN"`
	// Pprof also serves Go's profiles under /debug/pprof/ on that address.
	// Default: false.
	Pprof bool `yaml:"pprof" env:"PPROF"`
}

// Tenant is one customer of the lake, with a store of its own.
type Tenant struct {
	// Name is the tenant id used in routing, metrics and queries:
	// lowercase letters, digits and dashes.
	Name string `yaml:"name"`
	// Store is where this tenant's files go, written with its credentials only.
	Store Store `yaml:"store"`
	// FHIR is the tenant's FHIR server, for id-only notifications.
	FHIR FHIRServer `yaml:"fhir"`
}

// Store is a tenant's object store: a local directory or an S3 bucket.
type Store struct {
	// Type is "local" or "s3".
	Type string `yaml:"type"`
	// Path is the directory of a local store.
	Path string `yaml:"path"`
	// Bucket is the S3 bucket, owned by this tenant alone.
	Bucket string `yaml:"bucket"`
	// Prefix is prepended to every key inside the bucket. Default: none.
	Prefix string `yaml:"prefix"`
	// Endpoint is the S3 endpoint URL; empty means AWS itself.
	Endpoint string `yaml:"endpoint"`
	// Region of the bucket. Default: us-east-1.
	Region string `yaml:"region"`
	// PathStyle addresses buckets as endpoint/bucket (needed by most
	// S3-compatible servers).
	PathStyle bool `yaml:"path_style"`
	// AccessKeyEnv and SecretKeyEnv name the environment variables holding
	// this tenant's static credentials. Both empty: the default AWS chain.
	AccessKeyEnv string `yaml:"access_key_env"`
	SecretKeyEnv string `yaml:"secret_key_env"`
	// SessionTokenEnv names the variable holding the session token that goes
	// with temporary static credentials; only with the two above. The query
	// server hands each tenant's worker temporary credentials this way.
	SessionTokenEnv string `yaml:"session_token_env"`
	// RoleARN is a role assumed for every request to this tenant's bucket
	// (from the static keys above, or the default AWS chain): one role per
	// tenant, allowed only its bucket.
	RoleARN string `yaml:"role_arn"`
	// ExternalID is sent with the AssumeRole call when set.
	ExternalID string `yaml:"external_id"`
	// STSEndpoint is the STS endpoint URL role_arn is assumed through: a
	// private (VPC) endpoint, or an STS-compatible server. Default: AWS's
	// regional STS, or $AWS_ENDPOINT_URL_STS.
	STSEndpoint string `yaml:"sts_endpoint"`
	// Encryption is the server-side encryption asked for every object written
	// to this tenant's bucket. Default: none asked (the bucket's default applies).
	Encryption Encryption `yaml:"encryption"`
	// CAFile is a PEM bundle of certificate authorities trusted, besides the
	// system's, for endpoint (and sts_endpoint): a private S3 endpoint whose
	// certificate a private CA signed. Default: the system's only.
	CAFile string `yaml:"ca_file"`
}

// Encryption is a tenant's server-side encryption of the objects it writes.
type Encryption struct {
	// Mode is "" (none asked), "sse-s3" (keys managed by S3, AES-256) or
	// "sse-kms" (a KMS key, KMSKeyID).
	Mode string `yaml:"mode"`
	// KMSKeyID is the KMS key of sse-kms: a key id, key ARN or alias ARN.
	KMSKeyID string `yaml:"kms_key_id"`
}

// Encryption modes.
const (
	SSES3  = "sse-s3"
	SSEKMS = "sse-kms"
)

// Default returns the configuration used when no file is given: a local
// broker of the development stack and no tenants.
func Default() Config {
	return Config{
		Kafka: Kafka{
			Brokers:           []string{"127.0.0.1:19092"},
			Topics:            []string{"fhir.notifications"},
			Group:             "fhirlake",
			DeadLetterTopic:   "fhir.deadletter",
			ClientID:          "fhirlake",
			Partitions:        6,
			ReplicationFactor: 1,
			SessionTimeout:    45 * time.Second,
			RebalanceTimeout:  60 * time.Second,
		},
		Routing:         Routing{Header: "fhir-tenant"},
		Fetch:           Fetch{Concurrency: 8, RatePerSecond: 50, Timeout: 10 * time.Second, MaxRetries: 4},
		Flush:           Flush{MaxRows: 100_000, MaxBytes: 64 << 20, MaxAge: 5 * time.Second},
		Memory:          Memory{MaxBufferedBytes: 512 << 20},
		Metrics:         Metrics{Listen: "127.0.0.1:9464"},
		WorkDir:         ".fhirlake/work",
		ShutdownTimeout: 30 * time.Second,
		Compact:         DefaultCompact(),
		Audit:           DefaultAudit(),
		Iceberg:         DefaultIceberg(),
	}
}

// DefaultFile is the configuration file looked for in the working directory
// when neither --config nor FHIRLAKE_CONFIG names one.
const DefaultFile = "fhirlake.yaml"

// Locate returns the configuration file to load: the explicit path, else
// $FHIRLAKE_CONFIG, else ./fhirlake.yaml when it exists, else "".
func Locate(explicit string) string {
	if explicit != "" {
		return explicit
	}
	if p := os.Getenv("FHIRLAKE_CONFIG"); p != "" {
		return p
	}
	if _, err := os.Stat(DefaultFile); err == nil {
		return DefaultFile
	}
	return ""
}

// Load reads path (if not empty) over the defaults, applies environment
// overrides and validates the result.
func Load(path string) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("read config: %w", err)
		}
		if err := Parse(data, &cfg); err != nil {
			return Config{}, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := env.Parse(&cfg); err != nil {
		return Config{}, fmt.Errorf("config from environment: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Parse decodes YAML into cfg, rejecting unknown keys so that a typo does
// not silently fall back to a default.
func Parse(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, ioEOF) {
			return nil
		}
		return err
	}
	return nil
}

var tenantName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Validate reports every problem at once, each naming the key at fault.
func (c Config) Validate() error {
	var top problems
	if c.ShutdownTimeout <= 0 {
		top.add("shutdown_timeout: must be positive, got %s", c.ShutdownTimeout)
	}
	if c.WorkDir == "" {
		top.add("work_dir: required")
	}
	tenants, tenantErrs := validateTenants(c.Tenants)
	return errors.Join(
		c.Kafka.validate(),
		top.err(),
		c.Routing.validate(),
		c.Fetch.validate(),
		c.Flush.validate(),
		c.Memory.validate(c.Flush),
		c.Compact.Validate(),
		c.Audit.validate(),
		c.Iceberg.Validate(),
		tenantErrs,
		c.Routing.validateTopics(tenants),
	)
}

// problems gathers the failures of one section, each naming its key.
type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

func (p problems) err() error { return errors.Join(p...) }

func (k Kafka) validate() error {
	var p problems
	if len(k.Brokers) == 0 {
		p.add("kafka.brokers: at least one broker is required")
	}
	if len(k.Topics) == 0 {
		p.add("kafka.topics: at least one topic is required")
	}
	if k.Group == "" {
		p.add("kafka.group: required")
	}
	if k.DeadLetterTopic == "" {
		p.add("kafka.dead_letter_topic: required (records that cannot be stored go there)")
	}
	for _, t := range k.Topics {
		if t == k.DeadLetterTopic {
			p.add("kafka.dead_letter_topic: %q is also consumed; it would loop", t)
		}
	}
	if k.Partitions < 1 {
		p.add("kafka.partitions: must be at least 1, got %d", k.Partitions)
	}
	if k.SessionTimeout < time.Second {
		p.add("kafka.session_timeout: must be at least 1s, got %s", k.SessionTimeout)
	}
	if k.RebalanceTimeout < k.SessionTimeout/2 {
		p.add("kafka.rebalance_timeout (%s) is too short next to session_timeout (%s)", k.RebalanceTimeout, k.SessionTimeout)
	}
	if k.ReplicationFactor < 1 {
		p.add("kafka.replication_factor: must be at least 1, got %d", k.ReplicationFactor)
	}
	k.TLS.validate(&p)
	k.SASL.validate(&p, k.TLS)
	return p.err()
}

// validate checks the sources of the chain; validateTopics checks the
// topic map against the tenants.
func (r Routing) validate() error {
	var p problems
	if r.Header == "" && len(r.Topics) == 0 && !r.PayloadFields && r.BaseURLPattern == "" && r.TagSystem == "" {
		p.add("routing: configure at least one source (header, topics, payload_fields, base_url_pattern, tag_system), or no record can be routed")
	}
	if r.BaseURLPattern != "" {
		re, err := regexp.Compile(r.BaseURLPattern)
		switch {
		case err != nil:
			p.add("routing.base_url_pattern: %v", err)
		case re.SubexpIndex("tenant") < 0:
			p.add("routing.base_url_pattern: needs a named group (?P<tenant>…)")
		}
	}
	return p.err()
}

func (r Routing) validateTopics(tenants map[string]bool) error {
	var p problems
	for topic, tenant := range r.Topics {
		if !tenants[tenant] {
			p.add("routing.topics[%s]: tenant %q is not in tenants", topic, tenant)
		}
	}
	return p.err()
}

func (f Fetch) validate() error {
	if f.Concurrency < 1 || f.RatePerSecond <= 0 || f.Timeout <= 0 || f.MaxRetries < 0 {
		return errors.New("fetch: concurrency, rate_per_second and timeout must be positive and max_retries not negative")
	}
	return nil
}

func (f Flush) validate() error {
	var p problems
	if f.MaxRows < 1 {
		p.add("flush.max_rows: must be positive, got %d", f.MaxRows)
	}
	if f.MaxBytes < 1<<10 {
		p.add("flush.max_bytes: must be at least 1KiB, got %s", f.MaxBytes)
	}
	if f.MaxAge < 10*time.Millisecond {
		p.add("flush.max_age: must be at least 10ms, got %s", f.MaxAge)
	}
	return p.err()
}

// validate checks the limit and that the budget holds at least one full
// buffer.
func (m Memory) validate(flush Flush) error {
	var p problems
	if m.Limit != 0 && m.Limit < MinMemoryLimit {
		p.add("memory.limit: must be 0 (not managed) or at least %s, got %s", ByteSize(MinMemoryLimit), m.Limit)
	}
	if b := m.Budget(); b < flush.MaxBytes {
		if b < m.MaxBufferedBytes {
			p.add("memory.limit (%s) leaves a buffer budget of %s (1/4 of it), less than flush.max_bytes (%s)", m.Limit, b, flush.MaxBytes)
		} else {
			p.add("memory.max_buffered_bytes (%s) must be at least flush.max_bytes (%s)", m.MaxBufferedBytes, flush.MaxBytes)
		}
	}
	return p.err()
}

// validateTenants checks every tenant and that no two share a name or a
// store; it returns the names seen.
func validateTenants(tenants []Tenant) (map[string]bool, error) {
	var p problems
	seen := map[string]bool{}
	owners := map[string]string{} // store → the tenant that has it
	for i, t := range tenants {
		at := fmt.Sprintf("tenants[%d]", i)
		if !tenantName.MatchString(t.Name) {
			p.add("%s.name: %q must be lowercase letters, digits and dashes", at, t.Name)
		}
		if seen[t.Name] {
			p.add("%s.name: %q appears twice", at, t.Name)
		}
		seen[t.Name] = true
		at += " (" + t.Name + ")"
		t.Store.validate(&p, at+".store", t.Name, owners)
		t.FHIR.validate(&p, at+".fhir")
	}
	return seen, p.err()
}

// validate checks one tenant's store, at being its key; owners maps each
// store seen so far to its tenant, so that no two tenants share one.
func (s Store) validate(p *problems, at, tenant string, owners map[string]string) {
	switch s.Type {
	case "local":
		if s.Path == "" {
			p.add("%s.path: required for a local store", at)
		}
		if other, ok := owners["local:"+s.Path]; ok {
			p.add("%s.path: %q is also the store of tenant %s; tenants never share a store", at, s.Path, other)
		}
		owners["local:"+s.Path] = tenant
		if s.Encryption != (Encryption{}) || s.CAFile != "" {
			p.add("%s: encryption and ca_file apply to an s3 store only", at)
		}
	case "s3":
		if s.Bucket == "" {
			p.add("%s.bucket: required for an s3 store", at)
		}
		if other, ok := owners["s3:"+s.Endpoint+"/"+s.Bucket]; ok {
			p.add("%s.bucket: %q is also the bucket of tenant %s; tenants never share a bucket", at, s.Bucket, other)
		}
		owners["s3:"+s.Endpoint+"/"+s.Bucket] = tenant
		if (s.AccessKeyEnv == "") != (s.SecretKeyEnv == "") {
			p.add("%s: set both access_key_env and secret_key_env, or neither", at)
		}
		if s.SessionTokenEnv != "" && s.AccessKeyEnv == "" {
			p.add("%s.session_token_env: goes with access_key_env and secret_key_env, which are not set", at)
		}
		for _, name := range []string{s.AccessKeyEnv, s.SecretKeyEnv, s.SessionTokenEnv} {
			if name != "" && os.Getenv(name) == "" {
				p.add("%s: environment variable %s is not set", at, name)
			}
		}
		if s.STSEndpoint != "" {
			if s.RoleARN == "" {
				p.add("%s.sts_endpoint: only used to assume role_arn, which is not set", at)
			}
			if u, err := url.Parse(s.STSEndpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				p.add("%s.sts_endpoint: %q must be an http(s) URL", at, s.STSEndpoint)
			}
		}
		s.Encryption.validate(p, at+".encryption")
		if s.CAFile != "" {
			if err := checkCAFile(s.CAFile); err != nil {
				p.add("%s.ca_file: %v", at, err)
			}
		}
	default:
		p.add("%s.type: %q must be local or s3", at, s.Type)
	}
}

func (e Encryption) validate(p *problems, at string) {
	switch e.Mode {
	case "", SSES3:
		if e.KMSKeyID != "" {
			p.add("%s.kms_key_id: only used with mode %s", at, SSEKMS)
		}
	case SSEKMS:
		if e.KMSKeyID == "" {
			p.add("%s.kms_key_id: required with mode %s (a key id, key ARN or alias ARN)", at, SSEKMS)
		}
	default:
		p.add("%s.mode: %q must be %s or %s (or empty for none)", at, e.Mode, SSES3, SSEKMS)
	}
}

// checkCAFile reads a PEM bundle and checks that it holds at least one certificate.
func checkCAFile(path string) error {
	pem, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s holds no PEM certificate", path)
	}
	return nil
}

func (f FHIRServer) validate(p *problems, at string) {
	if f.BaseURL != "" && !strings.HasPrefix(f.BaseURL, "https://") && !strings.HasPrefix(f.BaseURL, "http://") {
		p.add("%s.base_url: %q must be an http(s) URL", at, f.BaseURL)
	}
	if f.TokenEnv != "" && os.Getenv(f.TokenEnv) == "" {
		p.add("%s.token_env: environment variable %s is not set", at, f.TokenEnv)
	}
}

// Tenant returns the named tenant's configuration.
func (c Config) Tenant(name string) (Tenant, bool) {
	for _, t := range c.Tenants {
		if t.Name == name {
			return t, true
		}
	}
	return Tenant{}, false
}
