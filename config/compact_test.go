package config

import (
	"strings"
	"testing"
	"time"
)

func TestCompactDefaults(t *testing.T) {
	if err := DefaultCompact().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if got := (Compact{}).WithDefaults(); got != DefaultCompact() {
		t.Errorf("an unset section: got %+v, want the defaults", got)
	}
	// Explicit zero durations stay: 0 keeps every speed file, 0 delay reads every file.
	c := DefaultCompact()
	c.SpeedRetention, c.ConsistencyDelay, c.Overlap = 0, 0, 0
	if got := c.WithDefaults(); got.SpeedRetention != 0 || got.ConsistencyDelay != 0 || got.Overlap != 0 {
		t.Errorf("explicit zeros were replaced: %+v", got)
	}
}

func TestCompactValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Compact)
		want   string
	}{
		{"parallelism", func(c *Compact) { c.Parallelism = 0 }, "compact.parallelism"},
		{"threads", func(c *Compact) { c.Threads = -1 }, "compact.threads"},
		{"timeout", func(c *Compact) { c.Timeout = time.Second }, "compact.timeout"},
		{"negative", func(c *Compact) { c.Overlap = -time.Minute }, "must not be negative"},
		{"retention below overlap", func(c *Compact) { c.SpeedRetention = time.Minute }, "compact.speed_retention (1m0s) must be at least overlap"},
		{"keep", func(c *Compact) { c.KeepSnapshots = 0 }, "compact.keep_snapshots"},
		{"schedule", func(c *Compact) { c.Schedule = " " }, "compact.schedule"},
		{"project dir", func(c *Compact) { c.ProjectDir = t.TempDir() }, "compact.project_dir"},
		{"severity", func(c *Compact) { c.RelationshipSeverity = "fatal" }, "compact.relationship_severity"},
		{"lease ttl", func(c *Compact) { c.LeaseTTL = 100 * time.Millisecond }, "compact.lease_ttl: must be at least 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultCompact()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

// DuckDB gets a share of compact.memory_limit, so that the dbt process around it stays
// within the limit; a limit that is no size is refused by name.
func TestCompactDuckDBMemoryLimit(t *testing.T) {
	for in, want := range map[string]string{"4GB": "3072MiB", "4GiB": "3072MiB", "1024MiB": "768MiB"} {
		c := DefaultCompact()
		c.MemoryLimit = in
		got, err := c.DuckDBMemoryLimit()
		if err != nil || got != want {
			t.Errorf("memory_limit %s: DuckDB gets %q, %v; want %s", in, got, err, want)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("memory_limit %s: %v", in, err)
		}
	}
	for _, in := range []string{"lots", "1.5GB", "64MiB"} {
		c := DefaultCompact()
		c.MemoryLimit = in
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "compact.memory_limit") {
			t.Errorf("memory_limit %s: %v, want an error naming compact.memory_limit", in, err)
		}
	}
}
