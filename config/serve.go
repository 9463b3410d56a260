package config

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Serve configures `fhirlake serve`: the SQL API over each tenant's lake, its
// status page and its metrics. Zero values mean the documented defaults.
type Serve struct {
	// Listen is host:port of the API, the status page and /metrics.
	// Default: 127.0.0.1:8080.
	Listen string `yaml:"listen" env:"LISTEN"`
	// APIKeys open one tenant each. Only the SHA-256 of a key is stored:
	// `fhirlake serve hash-key` prints it. A key opens its own tenant only:
	// its queries, its tables and its status.
	APIKeys []APIKey `yaml:"api_keys"`
	// AdminKeys open the status of every tenant (/v1/status and each
	// tenant's /v1/status/tenants/{tenant}: names, views, freshness,
	// compactions, consumer lag), never a tenant's data. Without any,
	// /v1/status is off. Default: none.
	AdminKeys []AdminKey `yaml:"admin_keys"`
	// MaxRequestBytes bounds the body of a query request; larger ones get 413.
	// Default: 64KiB.
	MaxRequestBytes ByteSize `yaml:"max_request_bytes" env:"MAX_REQUEST_BYTES"`
	// QueryTimeout bounds one request to a tenant from its arrival: waiting
	// for one of the tenant's connections, parsing, planning, execution and
	// the response; DuckDB is interrupted when it passes (504). Default: 30s.
	QueryTimeout time.Duration `yaml:"query_timeout" env:"QUERY_TIMEOUT"`
	// MaxResultRows cuts results beyond this many rows (the response says it
	// was cut). Default: 1000000.
	MaxResultRows int `yaml:"max_result_rows" env:"MAX_RESULT_ROWS"`
	// MaxResultBytes cuts results beyond about this many bytes, checked
	// between rows as they stream (JSON and CSV as sent, Arrow and Parquet
	// by their Arrow batches' size); the response says it was cut. Default:
	// 512MiB.
	MaxResultBytes ByteSize `yaml:"max_result_bytes" env:"MAX_RESULT_BYTES"`
	// MaxSessions bounds the tenant sessions kept open (one DuckDB each) by
	// one pool; the least recently used one is closed beyond it. serve runs
	// each tenant's session in a worker of its own, bounded by MaxWorkers
	// instead. Default: 16.
	MaxSessions int `yaml:"max_sessions" env:"MAX_SESSIONS"`
	// RefreshInterval is how often, at most, a request first brings its
	// tenant's session up to date: the lake is listed (an S3 tenant's speed
	// files and manifest, one listing each) and the views are rebuilt if it
	// changed. Lower is fresher and costs a listing per interval per tenant
	// in use. Default: 2s.
	RefreshInterval time.Duration `yaml:"refresh_interval" env:"REFRESH_INTERVAL"`
	// SpeedOverlap re-reads the speed files modified up to this long before a
	// batch snapshot's watermark, like compact.overlap: keep it at least as
	// long. Default: 1h.
	SpeedOverlap time.Duration `yaml:"speed_overlap" env:"SPEED_OVERLAP"`
	// MemoryLimit bounds each tenant's DuckDB, e.g. "1GB". Default: 1GB.
	MemoryLimit string `yaml:"memory_limit" env:"MEMORY_LIMIT"`
	// Threads is each tenant's DuckDB thread count. Default: 2.
	Threads int `yaml:"threads" env:"THREADS"`
	// Connections bounds the queries of one tenant that run at once; the
	// others wait, at most MaxQueued of them. Default: 4.
	Connections int `yaml:"connections" env:"CONNECTIONS"`
	// MaxQueued bounds the requests of one tenant that wait for one of its
	// connections; beyond it a request gets 429 with Retry-After at once. A
	// waiting request counts against its query timeout. Default: 16.
	MaxQueued int `yaml:"max_queued" env:"MAX_QUEUED"`
	// MirrorParallelism was how many objects an S3 tenant's local mirror
	// downloaded at once.
	//
	// Deprecated: ignored. S3 tenants are read directly through httpfs and
	// there is no mirror left; the key is still accepted so that existing
	// configurations load (unknown keys are refused).
	MirrorParallelism int `yaml:"mirror_parallelism" env:"MIRROR_PARALLELISM"`
	// HTTPFSExtension is the file of DuckDB's httpfs extension
	// (httpfs.duckdb_extension from the pinned duckdb-extension-httpfs wheel,
	// built for exactly the DuckDB in this binary), loaded by path, with its
	// signature checked, into the sessions of tenants whose store is S3.
	// DuckDB never downloads extensions. Lakes in a local directory need
	// none. Default: $FHIRLAKE_HTTPFS_EXTENSION (the local stack and the
	// image set it).
	HTTPFSExtension string `yaml:"httpfs_extension" env:"HTTPFS_EXTENSION"`
	// IcebergExtension and AvroExtension are the files of DuckDB's iceberg and
	// avro extensions (iceberg.duckdb_extension and avro.duckdb_extension from
	// the pinned duckdb-extension-iceberg and duckdb-extension-avro wheels),
	// loaded by path with their signatures checked, as httpfs is. With both set,
	// an S3 tenant's session reads the batch snapshot through its Iceberg tables
	// when the compactor published them (docs/format/iceberg.md, "The
	// pointer"); without them, from the snapshot's files. Default:
	// $FHIRLAKE_ICEBERG_EXTENSION and $FHIRLAKE_AVRO_EXTENSION (the local stack
	// and the image set them).
	IcebergExtension string `yaml:"iceberg_extension" env:"ICEBERG_EXTENSION"`
	AvroExtension    string `yaml:"avro_extension" env:"AVRO_EXTENSION"`
	// DisableStatus turns off the status page at /, /v1/status and
	// /v1/status/tenants/{tenant}, which show, to an admin key or the
	// tenant's own key, the tenants' names, their views and freshness, the
	// last compaction and the consumer lag — metadata, never rows.
	// Default: false.
	DisableStatus bool `yaml:"disable_status" env:"DISABLE_STATUS"`
	// MetricsTenantLabels labels the query server's metrics with tenant
	// names. /metrics needs no key, so by default every tenant's series is
	// labelled tenant="*". Default: false.
	MetricsTenantLabels bool `yaml:"metrics_tenant_labels" env:"METRICS_TENANT_LABELS"`
	// MaxWorkers bounds the tenant query workers running at once: each
	// tenant's SQL runs in a process of its own, started on its first
	// request. Starting one more stops the least recently used worker
	// without a request in flight; when every worker has one, the request
	// gets 503. Default: 16.
	MaxWorkers int `yaml:"max_workers" env:"MAX_WORKERS"`
	// WorkerMemoryLimit bounds each worker process (DuckDB, its planning,
	// results being written, the Go runtime): a cgroup's memory.max (v2)
	// or memory.limit_in_bytes (v1), or RLIMIT_AS on address space without
	// a writable cgroup. A worker over it is killed, its requests get 503
	// and the next one starts a new worker. It must exceed memory_limit,
	// DuckDB's own bound, which constant folding and the runtime ignore.
	// Default: 2GiB.
	WorkerMemoryLimit ByteSize `yaml:"worker_memory_limit" env:"WORKER_MEMORY_LIMIT"`
	// WorkerIdleTimeout stops a worker that has had no request for this
	// long; the next request starts one again (about 100 ms plus building
	// the tenant's views). Default: 5m.
	WorkerIdleTimeout time.Duration `yaml:"worker_idle_timeout" env:"WORKER_IDLE_TIMEOUT"`
	// WorkerGrace is how long a worker has to finish a request after the
	// front gave up on it (query timeout, client gone) and to exit after
	// SIGTERM; past it the worker is killed. Default: 5s.
	WorkerGrace time.Duration `yaml:"worker_grace" env:"WORKER_GRACE"`
	// TLS serves the API, the status page and /metrics over HTTPS. Without
	// it they are plain HTTP, meant for a loopback listen: a listen on
	// another address without TLS is logged as a warning at startup.
	TLS ServeTLS `yaml:"tls" envPrefix:"TLS_"`
	// Flight serves Arrow Flight SQL (gRPC) on a port of its own, in front
	// of the same workers, keys, checks and limits as the HTTP API, and
	// over TLS with serve.tls. Default: off.
	Flight ServeFlight `yaml:"flight" envPrefix:"FLIGHT_"`
}

// ServeFlight is the Arrow Flight SQL endpoint of serve.
type ServeFlight struct {
	// Listen is host:port of the Flight SQL endpoint; empty: none.
	// Default: none.
	Listen string `yaml:"listen" env:"LISTEN"`
	// MaxPreparedStatements bounds each tenant's open prepared statements;
	// a client that opens more gets RESOURCE_EXHAUSTED, and one unused for
	// an hour makes room. Default: 256.
	MaxPreparedStatements int `yaml:"max_prepared_statements" env:"MAX_PREPARED_STATEMENTS"`
}

// ServeTLS is the query server's certificate and, optionally, the CA its
// clients' certificates must chain to. The files are read again when they
// change (checked at most every few seconds); a new pair that does not
// load leaves the previous one in service.
type ServeTLS struct {
	// CertFile is the PEM certificate chain, leaf first. Set with KeyFile,
	// or neither (plain HTTP).
	CertFile string `yaml:"cert_file" env:"CERT_FILE"`
	// KeyFile is the PEM private key of CertFile's leaf.
	KeyFile string `yaml:"key_file" env:"KEY_FILE"`
	// ClientCAFile, when set, requires every client to present a
	// certificate that chains to one of the PEM certificates in it (mutual
	// TLS); the API keys are still required. Default: none.
	ClientCAFile string `yaml:"client_ca_file" env:"CLIENT_CA_FILE"`
	// MinVersion is the oldest TLS version accepted: "1.2" or "1.3".
	// Default: 1.2.
	MinVersion string `yaml:"min_version" env:"MIN_VERSION"`
}

// Enabled says whether the server speaks TLS.
func (t ServeTLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// TLSVersion is the tls.Version* constant of min_version, 0 if unknown.
func (t ServeTLS) TLSVersion() uint16 {
	switch t.MinVersion {
	case "1.2":
		return tls.VersionTLS12
	case "1.3":
		return tls.VersionTLS13
	}
	return 0
}

func (t ServeTLS) validate(bad func(string, ...any)) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("tls: set both cert_file and key_file, or neither (plain HTTP)")
	}
	if t.ClientCAFile != "" && !t.Enabled() {
		bad("tls.client_ca_file: client certificates need TLS: set cert_file and key_file")
	}
	if t.TLSVersion() == 0 {
		bad("tls.min_version: %q must be 1.2 or 1.3", t.MinVersion)
	}
}

// Loopback says whether listen (host:port) accepts connections from this
// machine only: a loopback address or localhost. An empty host (every
// interface) is not.
func Loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// APIKey is one tenant's key, stored as its SHA-256.
type APIKey struct {
	// Tenant is the only tenant the key opens.
	Tenant string `yaml:"tenant"`
	// KeySHA256 is the lowercase hex SHA-256 of the key.
	KeySHA256 string `yaml:"key_sha256"`
	// Name labels the key in logs (never the key itself). Optional.
	Name string `yaml:"name"`
}

// AdminKey opens the status of every tenant, stored as its SHA-256.
type AdminKey struct {
	// KeySHA256 is the lowercase hex SHA-256 of the key.
	KeySHA256 string `yaml:"key_sha256"`
	// Name labels the key in logs (never the key itself). Optional.
	Name string `yaml:"name"`
}

// DefaultServe returns the defaults documented on Serve.
func DefaultServe() Serve {
	return Serve{
		Listen:            "127.0.0.1:8080",
		MaxRequestBytes:   64 << 10,
		QueryTimeout:      30 * time.Second,
		MaxResultRows:     1_000_000,
		MaxResultBytes:    512 << 20,
		MaxSessions:       16,
		RefreshInterval:   2 * time.Second,
		SpeedOverlap:      time.Hour,
		MemoryLimit:       "1GB",
		Threads:           2,
		Connections:       4,
		MaxQueued:         16,
		MaxWorkers:        16,
		WorkerMemoryLimit: 2 << 30,
		WorkerIdleTimeout: 5 * time.Minute,
		WorkerGrace:       5 * time.Second,
		TLS:               ServeTLS{MinVersion: "1.2"},
		Flight:            ServeFlight{MaxPreparedStatements: 256},
	}
}

// WithDefaults fills every unset field with its default.
func (s Serve) WithDefaults() Serve {
	d := DefaultServe()
	if s.Listen == "" {
		s.Listen = d.Listen
	}
	if s.MaxRequestBytes == 0 {
		s.MaxRequestBytes = d.MaxRequestBytes
	}
	if s.QueryTimeout == 0 {
		s.QueryTimeout = d.QueryTimeout
	}
	if s.MaxResultRows == 0 {
		s.MaxResultRows = d.MaxResultRows
	}
	if s.MaxResultBytes == 0 {
		s.MaxResultBytes = d.MaxResultBytes
	}
	if s.MaxSessions == 0 {
		s.MaxSessions = d.MaxSessions
	}
	if s.RefreshInterval == 0 {
		s.RefreshInterval = d.RefreshInterval
	}
	if s.SpeedOverlap == 0 {
		s.SpeedOverlap = d.SpeedOverlap
	}
	if s.MemoryLimit == "" {
		s.MemoryLimit = d.MemoryLimit
	}
	if s.Threads == 0 {
		s.Threads = d.Threads
	}
	if s.Connections == 0 {
		s.Connections = d.Connections
	}
	if s.MaxQueued == 0 {
		s.MaxQueued = d.MaxQueued
	}
	if s.HTTPFSExtension == "" {
		s.HTTPFSExtension = os.Getenv("FHIRLAKE_HTTPFS_EXTENSION")
	}
	if s.IcebergExtension == "" {
		s.IcebergExtension = os.Getenv("FHIRLAKE_ICEBERG_EXTENSION")
	}
	if s.AvroExtension == "" {
		s.AvroExtension = os.Getenv("FHIRLAKE_AVRO_EXTENSION")
	}
	if s.MaxWorkers == 0 {
		s.MaxWorkers = d.MaxWorkers
	}
	if s.WorkerMemoryLimit == 0 {
		s.WorkerMemoryLimit = d.WorkerMemoryLimit
	}
	if s.WorkerIdleTimeout == 0 {
		s.WorkerIdleTimeout = d.WorkerIdleTimeout
	}
	if s.WorkerGrace == 0 {
		s.WorkerGrace = d.WorkerGrace
	}
	if s.TLS.MinVersion == "" {
		s.TLS.MinVersion = d.TLS.MinVersion
	}
	if s.Flight.MaxPreparedStatements == 0 {
		s.Flight.MaxPreparedStatements = d.Flight.MaxPreparedStatements
	}
	return s
}

var (
	sha256Hex   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	memoryLimit = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?\s*([KMGT]i?B|B)?$`)
)

// Validate reports every problem with the section at once, each naming its
// key. tenants are the configured tenants: a key must name one of them.
func (s Serve) Validate(tenants []Tenant) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("serve."+format, args...)) }
	if s.Listen == "" {
		bad("listen: required")
	}
	if s.MaxRequestBytes < 1<<10 {
		bad("max_request_bytes: must be at least 1KiB, got %s", s.MaxRequestBytes)
	}
	if s.QueryTimeout < 10*time.Millisecond {
		bad("query_timeout: must be at least 10ms, got %s", s.QueryTimeout)
	}
	if s.MaxResultRows < 1 {
		bad("max_result_rows: must be positive, got %d", s.MaxResultRows)
	}
	if s.MaxResultBytes < 1<<10 {
		bad("max_result_bytes: must be at least 1KiB, got %s", s.MaxResultBytes)
	}
	if s.MaxSessions < 1 {
		bad("max_sessions: must be positive, got %d", s.MaxSessions)
	}
	if s.RefreshInterval < 0 {
		bad("refresh_interval: must not be negative, got %s", s.RefreshInterval)
	}
	if s.SpeedOverlap < 0 {
		bad("speed_overlap: must not be negative, got %s", s.SpeedOverlap)
	}
	if n, ok := MemoryLimitBytes(s.MemoryLimit); !ok {
		bad("memory_limit: %q: want a size such as 512MB or 2GB", s.MemoryLimit)
	} else if int64(s.WorkerMemoryLimit) <= n {
		bad("worker_memory_limit: %s must exceed memory_limit (%s): DuckDB's own bound sits below the worker's", s.WorkerMemoryLimit, s.MemoryLimit)
	}
	if s.MaxWorkers < 1 {
		bad("max_workers: must be positive, got %d", s.MaxWorkers)
	}
	if s.WorkerIdleTimeout < time.Second {
		bad("worker_idle_timeout: must be at least 1s, got %s", s.WorkerIdleTimeout)
	}
	if s.WorkerGrace < 100*time.Millisecond {
		bad("worker_grace: must be at least 100ms, got %s", s.WorkerGrace)
	}
	if s.Threads < 1 || s.Connections < 1 {
		bad("threads and connections: must be positive")
	}
	if s.MaxQueued < 1 {
		bad("max_queued: must be positive, got %d", s.MaxQueued)
	}
	s.TLS.validate(bad)
	if l := s.Flight.Listen; l != "" {
		if _, _, err := net.SplitHostPort(l); err != nil {
			bad("flight.listen: %q: want host:port", l)
		} else if l == s.Listen {
			bad("flight.listen: %q is serve.listen's address: Flight SQL needs a port of its own", l)
		}
	}
	if s.Flight.MaxPreparedStatements < 1 {
		bad("flight.max_prepared_statements: must be positive, got %d", s.Flight.MaxPreparedStatements)
	}
	keys := make([]tenantHash, len(s.APIKeys))
	for i, k := range s.APIKeys {
		keys[i] = tenantHash{k.Tenant, k.KeySHA256}
	}
	owner := validateTenantHashes(bad, tenants, "api_keys", "key_sha256", "key", keys)
	for i, k := range s.AdminKeys {
		at := fmt.Sprintf("admin_keys[%d].key_sha256", i)
		if !sha256Hex.MatchString(k.KeySHA256) {
			bad("%s: want 64 lowercase hex digits (the SHA-256 of the key; `fhirlake serve hash-key` prints it)", at)
		} else if t, ok := owner[k.KeySHA256]; ok {
			bad("%s: the same key opens tenant %s; an admin key must be a key of its own", at, t)
		}
	}
	return errors.Join(errs...)
}

// MemoryLimitBytes reads a memory_limit as DuckDB does: KB, MB, GB, TB
// are powers of 1000, KiB… powers of 1024, no unit means bytes.
func MemoryLimitBytes(v string) (int64, bool) {
	m := memoryLimit.FindStringSubmatch(strings.TrimSpace(v))
	if m == nil {
		return 0, false
	}
	num := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), m[2]))
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, false
	}
	mult := map[string]float64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[m[2]]
	return int64(f * mult), true
}

// HashAPIKey returns the value to store in key_sha256 for key.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// tenantHash is a hashed secret that opens one tenant: an API key of serve,
// a secret of receive.
type tenantHash struct{ tenant, sha256 string }

// validateTenantHashes checks the list's entries (list[i].field): each names
// a configured tenant and is a SHA-256 in lowercase hex that opens no other
// tenant. what names the secret in the messages ("key", "secret"). It
// returns the tenant each valid hash opens.
func validateTenantHashes(bad func(string, ...any), tenants []Tenant, list, field, what string, hs []tenantHash) map[string]string {
	known := map[string]bool{}
	for _, t := range tenants {
		known[t.Name] = true
	}
	owner := map[string]string{}
	for i, h := range hs {
		at := fmt.Sprintf("%s[%d]", list, i)
		if !known[h.tenant] {
			bad("%s.tenant: %q is not a configured tenant", at, h.tenant)
		}
		if !sha256Hex.MatchString(h.sha256) {
			bad("%s.%s: want 64 lowercase hex digits (the SHA-256 of the %s; `fhirlake serve hash-key` prints it)", at, field, what)
			continue
		}
		if other, ok := owner[h.sha256]; ok && other != h.tenant {
			bad("%s.%s: the same %s also opens tenant %s; a %s opens one tenant", at, field, what, other, what)
		}
		owner[h.sha256] = h.tenant
	}
	return owner
}
