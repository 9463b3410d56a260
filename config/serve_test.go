package config

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServeDefaultsAndValidate(t *testing.T) {
	s := Serve{}.WithDefaults()
	if d := DefaultServe(); s.Listen != d.Listen || s.QueryTimeout != d.QueryTimeout || s.MaxSessions != d.MaxSessions || s.RefreshInterval != d.RefreshInterval ||
		s.MaxQueued != 16 || s.MetricsTenantLabels || len(s.AdminKeys) != 0 {
		t.Fatalf("got %+v, want the defaults", s)
	}
	tenants := []Tenant{{Name: "acme"}, {Name: "globex"}}
	if err := s.Validate(tenants); err != nil {
		t.Fatal(err)
	}
	s.APIKeys = []APIKey{
		{Tenant: "acme", KeySHA256: HashAPIKey("a")},
		{Tenant: "initech", KeySHA256: HashAPIKey("b")},
		{Tenant: "globex", KeySHA256: "NOT-HEX"},
		{Tenant: "globex", KeySHA256: HashAPIKey("a")},
	}
	s.AdminKeys = []AdminKey{{KeySHA256: HashAPIKey("ops")}, {KeySHA256: HashAPIKey("a")}, {KeySHA256: "nope"}}
	s.MemoryLimit = "lots"
	s.MaxQueued = -1
	err := s.Validate(tenants)
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"api_keys[1].tenant", "api_keys[2].key_sha256", "api_keys[3].key_sha256: the same key also opens tenant acme", "memory_limit",
		"admin_keys[1].key_sha256: the same key opens tenant", "admin_keys[2].key_sha256: want 64", "max_queued"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "admin_keys[0]") {
		t.Errorf("a key of its own is a valid admin key:\n%v", err)
	}
}

func TestServeWorkerKeys(t *testing.T) {
	s := Serve{}.WithDefaults()
	if s.MaxWorkers != 16 || s.WorkerMemoryLimit != 2<<30 || s.WorkerIdleTimeout.Minutes() != 5 || s.WorkerGrace.Seconds() != 5 {
		t.Fatalf("got %+v, want the worker defaults", s)
	}
	tests := []struct {
		name string
		edit func(*Serve)
		want string // "" for valid
	}{
		{"defaults", func(*Serve) {}, ""},
		{"cap above DuckDB's limit", func(s *Serve) { s.MemoryLimit, s.WorkerMemoryLimit = "1.5GB", 2<<30 }, ""},
		{"cap at DuckDB's limit", func(s *Serve) { s.MemoryLimit, s.WorkerMemoryLimit = "2GiB", 2<<30 }, "worker_memory_limit"},
		{"cap below DuckDB's limit", func(s *Serve) { s.MemoryLimit = "4GB" }, "worker_memory_limit"},
		{"no workers", func(s *Serve) { s.MaxWorkers = -1 }, "max_workers"},
		{"idle too short", func(s *Serve) { s.WorkerIdleTimeout = 1 }, "worker_idle_timeout"},
		{"grace too short", func(s *Serve) { s.WorkerGrace = 1 }, "worker_grace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Serve{}.WithDefaults()
			tt.edit(&s)
			err := s.Validate(nil)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v, want valid", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want an error about %s", err, tt.want)
			}
		})
	}
}

func TestMemoryLimitBytes(t *testing.T) {
	for in, want := range map[string]int64{"1GB": 1e9, "512MB": 512e6, "1.5GB": 1.5e9, "2GiB": 2 << 30, "100": 100, "1 GB": 1e9} {
		if got, ok := MemoryLimitBytes(in); !ok || got != want {
			t.Errorf("MemoryLimitBytes(%q): got %d %v, want %d", in, got, ok, want)
		}
	}
	if _, ok := MemoryLimitBytes("lots"); ok {
		t.Error(`MemoryLimitBytes("lots"): got ok`)
	}
}

// A configuration written for the mirror still loads: serve.mirror_parallelism
// is accepted and ignored.
func TestServeMirrorParallelismStillAccepted(t *testing.T) {
	var cfg Config
	if err := Parse([]byte("serve:\n  mirror_parallelism: 4\n  httpfs_extension: /opt/duckdb/httpfs.duckdb_extension\n"), &cfg); err != nil {
		t.Fatalf("got %v, want the old key accepted", err)
	}
	s := cfg.Serve.WithDefaults()
	if err := s.Validate(nil); err != nil {
		t.Fatal(err)
	}
	if s.HTTPFSExtension != "/opt/duckdb/httpfs.duckdb_extension" {
		t.Errorf("got httpfs_extension %q", s.HTTPFSExtension)
	}
}

func TestServeHTTPFSExtensionFromEnvironment(t *testing.T) {
	t.Setenv("FHIRLAKE_HTTPFS_EXTENSION", "/x/httpfs.duckdb_extension")
	if got := (Serve{}).WithDefaults().HTTPFSExtension; got != "/x/httpfs.duckdb_extension" {
		t.Errorf("got %q, want $FHIRLAKE_HTTPFS_EXTENSION", got)
	}
	if got := (Serve{HTTPFSExtension: "/y"}).WithDefaults().HTTPFSExtension; got != "/y" {
		t.Errorf("got %q, want the configured file", got)
	}
}

func TestServeTLS(t *testing.T) {
	if s := (Serve{}).WithDefaults(); s.TLS.Enabled() || s.TLS.MinVersion != "1.2" || s.TLS.TLSVersion() != tls.VersionTLS12 {
		t.Fatalf("got %+v, want plain HTTP and TLS 1.2 at least by default", s.TLS)
	}
	tests := []struct {
		name string
		tls  ServeTLS
		want string // "" for valid
	}{
		{"pair", ServeTLS{CertFile: "c.pem", KeyFile: "k.pem"}, ""},
		{"mutual, 1.3", ServeTLS{CertFile: "c.pem", KeyFile: "k.pem", ClientCAFile: "ca.pem", MinVersion: "1.3"}, ""},
		{"certificate alone", ServeTLS{CertFile: "c.pem"}, "serve.tls: set both cert_file and key_file"},
		{"key alone", ServeTLS{KeyFile: "k.pem"}, "serve.tls: set both cert_file and key_file"},
		{"client CA without TLS", ServeTLS{ClientCAFile: "ca.pem"}, "serve.tls.client_ca_file: client certificates need TLS"},
		{"TLS 1.1", ServeTLS{CertFile: "c.pem", KeyFile: "k.pem", MinVersion: "1.1"}, `serve.tls.min_version: "1.1" must be 1.2 or 1.3`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Serve{TLS: tt.tls}.WithDefaults()
			err := s.Validate(nil)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v, want valid", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want an error about %s", err, tt.want)
			}
		})
	}
}

// The TLS keys load from the file (min_version written as a YAML number
// too) and from FHIRLAKE_SERVE_TLS_*.
func TestServeTLSFromFileAndEnvironment(t *testing.T) {
	cleanEnv(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte("serve:\n  tls: {cert_file: /tls/tls.crt, key_file: /tls/tls.key, min_version: 1.3}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FHIRLAKE_SERVE_TLS_CLIENT_CA_FILE", "/tls/ca.crt")
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	want := ServeTLS{CertFile: "/tls/tls.crt", KeyFile: "/tls/tls.key", ClientCAFile: "/tls/ca.crt", MinVersion: "1.3"}
	if cfg.Serve.TLS != want {
		t.Fatalf("got %+v, want %+v", cfg.Serve.TLS, want)
	}
	if err := cfg.Serve.WithDefaults().Validate(nil); err != nil {
		t.Fatal(err)
	}
}

func TestLoopback(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:8080": true, "127.0.0.2:1": true,
		"0.0.0.0:8080": false, ":8080": false, "10.0.0.5:8080": false, "[::]:8080": false, "query.example.org:443": false, "nonsense": false,
	} {
		if got := Loopback(listen); got != want {
			t.Errorf("Loopback(%q): got %v, want %v", listen, got, want)
		}
	}
}

func TestServeFlightKeys(t *testing.T) {
	if s := (Serve{}).WithDefaults(); s.Flight.Listen != "" || s.Flight.MaxPreparedStatements != 256 {
		t.Fatalf("got %+v, want Flight SQL off with 256 prepared statements", s.Flight)
	}
	tests := []struct {
		name string
		edit func(*Serve)
		want string // "" for valid
	}{
		{"off", func(*Serve) {}, ""},
		{"own port", func(s *Serve) { s.Flight.Listen = "127.0.0.1:8815" }, ""},
		{"no port", func(s *Serve) { s.Flight.Listen = "localhost" }, "flight.listen"},
		{"the HTTP port", func(s *Serve) { s.Flight.Listen = s.Listen }, "flight.listen"},
		{"no prepared statements", func(s *Serve) { s.Flight.MaxPreparedStatements = -1 }, "flight.max_prepared_statements"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Serve{}.WithDefaults()
			tt.edit(&s)
			err := s.Validate(nil)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v, want valid", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want an error about %s", err, tt.want)
			}
		})
	}
}

func TestServeIcebergExtensionsFromEnvironment(t *testing.T) {
	t.Setenv("FHIRLAKE_ICEBERG_EXTENSION", "/x/iceberg.duckdb_extension")
	t.Setenv("FHIRLAKE_AVRO_EXTENSION", "/x/avro.duckdb_extension")
	s := (Serve{}).WithDefaults()
	if s.IcebergExtension != "/x/iceberg.duckdb_extension" || s.AvroExtension != "/x/avro.duckdb_extension" {
		t.Errorf("got iceberg_extension %q, avro_extension %q", s.IcebergExtension, s.AvroExtension)
	}
	var cfg Config
	if err := Parse([]byte("serve:\n  iceberg_extension: /opt/duckdb/iceberg.duckdb_extension\n  avro_extension: /opt/duckdb/avro.duckdb_extension\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if s := cfg.Serve.WithDefaults(); s.IcebergExtension != "/opt/duckdb/iceberg.duckdb_extension" || s.AvroExtension != "/opt/duckdb/avro.duckdb_extension" {
		t.Errorf("got iceberg_extension %q, avro_extension %q", s.IcebergExtension, s.AvroExtension)
	}
}
