package config

import (
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
