package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Compact configures `fhirlake compact`: the nightly batch layer that rebuilds each
// tenant's marts with dbt from the speed layer and the previous snapshot, and publishes
// the new snapshot atomically. Zero values mean the documented defaults.
type Compact struct {
	// Schedule is when `fhirlake compact --schedule` runs, as a cron expression of five
	// fields (minute hour day-of-month month day-of-week) or a descriptor such as
	// @daily, in the process's local time. Default: "0 2 * * *" (02:00 every night).
	Schedule string `yaml:"schedule" env:"SCHEDULE"`
	// DBT is the dbt executable (dbt-core with dbt-duckdb, dbt/requirements.txt).
	// Default: $FHIRLAKE_DBT, else .cache/dbt-venv/bin/dbt under the working directory
	// or one of its parents, else dbt on PATH.
	DBT string `yaml:"dbt" env:"DBT"`
	// ProjectDir is a dbt project to run instead of the one built into the binary
	// (a checkout's dbt/ directory while developing models). Default: the built-in one.
	ProjectDir string `yaml:"project_dir" env:"PROJECT_DIR"`
	// DuckDBExtensionDir is the DuckDB extension directory that holds httpfs, needed by
	// tenants whose store is S3 (DuckDB never downloads extensions).
	// Default: $FHIRLAKE_DUCKDB_EXTENSION_DIR.
	DuckDBExtensionDir string `yaml:"duckdb_extension_dir" env:"DUCKDB_EXTENSION_DIR"`
	// Parallelism is how many tenants compact at once; each runs its own dbt and DuckDB
	// with Threads threads and MemoryLimit memory. Default: 2.
	Parallelism int `yaml:"parallelism" env:"PARALLELISM"`
	// Threads is the DuckDB threads of one tenant's run. Default: 2.
	Threads int `yaml:"threads" env:"THREADS"`
	// MemoryLimit bounds one tenant's run, e.g. "4GB" (GB and GiB alike are powers of
	// two): the dbt process with its DuckDB. DuckDB's own memory_limit, beyond which it
	// spills to the work directory, is DuckDBShare of it, leaving the rest to Python,
	// dbt and what DuckDB allocates outside its buffer manager. Default: 4GB.
	MemoryLimit string `yaml:"memory_limit" env:"MEMORY_LIMIT"`
	// Timeout bounds one tenant's run, dbt and upload included; a run cut short
	// publishes nothing. Default: 2h.
	Timeout time.Duration `yaml:"timeout" env:"TIMEOUT"`
	// Overlap re-reads the speed files modified up to this long before the watermark.
	// An object store dates an object by when its upload began, so a slow upload can
	// land behind the watermark; re-reading is harmless (readers keep the latest
	// version) and this is how long such an upload may take. Default: 1h.
	Overlap time.Duration `yaml:"overlap" env:"OVERLAP"`
	// ConsistencyDelay leaves speed files younger than this for the next run, so that a
	// flush whose files are still being uploaded is read whole. Default: 1m.
	ConsistencyDelay time.Duration `yaml:"consistency_delay" env:"CONSISTENCY_DELAY"`
	// SpeedRetention deletes, after a successful publication, the speed files older
	// than the new watermark minus this. The query layer must read the batch snapshot
	// before this is shortened; 0 keeps every speed file. Default: 168h (7 days).
	SpeedRetention time.Duration `yaml:"speed_retention" env:"SPEED_RETENTION"`
	// KeepSnapshots is how many published snapshots stay, the current one included, so
	// that a reader still on the previous one finishes; the batch Iceberg tables keep
	// the snapshots of these and no others. Default: 3.
	KeepSnapshots int `yaml:"keep_snapshots" env:"KEEP_SNAPSHOTS"`
	// RelationshipSeverity is how a failing referential test (an observation whose
	// patient is not in the patients mart, …) counts: "error" blocks the publication,
	// "warn" only reports it. The speed layer may briefly hold a resource before the
	// one it refers to; relax it when compacting mid-stream. Default: error.
	RelationshipSeverity string `yaml:"relationship_severity" env:"RELATIONSHIP_SEVERITY"`
	// OrphanGrace is how old the files of a snapshot that was never published (a run
	// killed or failed during upload) must be before they are deleted; a younger one
	// may belong to a run in progress. Default: 6h.
	OrphanGrace time.Duration `yaml:"orphan_grace" env:"ORPHAN_GRACE"`
	// LeaseTTL is how long a compactor's lease of a tenant (_lease/compactor.json in
	// its store) lasts unless renewed; the holder renews it every third of it. A
	// compactor that dies keeps the others from the tenant this long; one that cannot
	// renew it in time stops without publishing. The hosts' clocks must agree to well
	// within it. Default: 2m.
	LeaseTTL time.Duration `yaml:"lease_ttl" env:"LEASE_TTL"`
	// RebaseShare is when a run rewrites the state's base. The state models are merged
	// on read: a base, carried from snapshot to snapshot, and the keys and current rows
	// of the resources changed since. A run ranks only what changed and writes it
	// beside the base, until the resources changed since the base pass this share of
	// it; the next run then ranks the whole state and writes a new base. Smaller keeps
	// readers' merge small, larger makes more runs cost what changed. Default: 0.1.
	RebaseShare float64 `yaml:"rebase_share" env:"REBASE_SHARE"`
}

// DefaultCompact returns the defaults documented on Compact.
func DefaultCompact() Compact {
	return Compact{
		Schedule:             "0 2 * * *",
		Parallelism:          2,
		Threads:              2,
		MemoryLimit:          "4GB",
		Timeout:              2 * time.Hour,
		Overlap:              time.Hour,
		ConsistencyDelay:     time.Minute,
		SpeedRetention:       7 * 24 * time.Hour,
		KeepSnapshots:        3,
		OrphanGrace:          6 * time.Hour,
		RelationshipSeverity: "error",
		LeaseTTL:             2 * time.Minute,
		RebaseShare:          0.1,
	}
}

// WithDefaults fills every unset field with its default. The durations Overlap,
// ConsistencyDelay and SpeedRetention may legitimately be zero, so they are filled
// only when the whole section is unset.
func (c Compact) WithDefaults() Compact {
	d := DefaultCompact()
	if c == (Compact{}) {
		return d
	}
	if c.Schedule == "" {
		c.Schedule = d.Schedule
	}
	if c.Parallelism == 0 {
		c.Parallelism = d.Parallelism
	}
	if c.Threads == 0 {
		c.Threads = d.Threads
	}
	if c.MemoryLimit == "" {
		c.MemoryLimit = d.MemoryLimit
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.KeepSnapshots == 0 {
		c.KeepSnapshots = d.KeepSnapshots
	}
	if c.OrphanGrace == 0 {
		c.OrphanGrace = d.OrphanGrace
	}
	if c.RelationshipSeverity == "" {
		c.RelationshipSeverity = d.RelationshipSeverity
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = d.LeaseTTL
	}
	if c.RebaseShare == 0 {
		c.RebaseShare = d.RebaseShare
	}
	return c
}

// DuckDBShare is the part of compact.memory_limit a run's DuckDB gets as its own
// memory_limit. Measured at 5 M resources (docs/benchmarks.md, Compaction): with the
// whole limit, dbt's process peaked 0.74 GiB above it (Python, dbt, DuckDB's
// allocations outside its buffer manager), the compactor's own process another 0.15.
const DuckDBShare = 0.75

// DuckDBMemoryLimit is the memory_limit setting of a run's DuckDB: DuckDBShare of
// MemoryLimit, in MiB.
func (c Compact) DuckDBMemoryLimit() (string, error) {
	var b ByteSize
	if err := b.UnmarshalText([]byte(c.MemoryLimit)); err != nil {
		return "", err
	}
	mib := int64(float64(b) * DuckDBShare / (1 << 20))
	if mib < 64 {
		return "", fmt.Errorf("%s leaves DuckDB less than 64MiB", c.MemoryLimit)
	}
	return fmt.Sprintf("%dMiB", mib), nil
}

// Validate reports every problem with the section at once, each naming its key.
func (c Compact) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("compact."+format, args...)) }
	if strings.TrimSpace(c.Schedule) == "" {
		bad("schedule: required")
	}
	if c.Parallelism < 1 {
		bad("parallelism: must be at least 1, got %d", c.Parallelism)
	}
	if c.Threads < 1 {
		bad("threads: must be at least 1, got %d", c.Threads)
	}
	if c.MemoryLimit == "" {
		bad("memory_limit: required, e.g. 4GB")
	} else if _, err := c.DuckDBMemoryLimit(); err != nil {
		bad("memory_limit: %v", err)
	}
	if c.Timeout < time.Minute {
		bad("timeout: must be at least 1m, got %s", c.Timeout)
	}
	if c.Overlap < 0 || c.ConsistencyDelay < 0 || c.SpeedRetention < 0 || c.OrphanGrace < 0 {
		bad("overlap, consistency_delay, speed_retention and orphan_grace: must not be negative")
	}
	if c.SpeedRetention > 0 && c.SpeedRetention < c.Overlap {
		bad("speed_retention (%s) must be at least overlap (%s): a run re-reads the files of the overlap", c.SpeedRetention, c.Overlap)
	}
	if c.LeaseTTL < time.Second {
		bad("lease_ttl: must be at least 1s, got %s", c.LeaseTTL)
	}
	if c.RebaseShare <= 0 || c.RebaseShare > 10 {
		bad("rebase_share: must be above 0 and at most 10 (a share of the base), got %g", c.RebaseShare)
	}
	if c.KeepSnapshots < 1 {
		bad("keep_snapshots: must be at least 1 (the current snapshot), got %d", c.KeepSnapshots)
	}
	if c.RelationshipSeverity != "error" && c.RelationshipSeverity != "warn" {
		bad("relationship_severity: %q must be error or warn", c.RelationshipSeverity)
	}
	if c.ProjectDir != "" {
		if _, err := os.Stat(c.ProjectDir + "/dbt_project.yml"); err != nil {
			bad("project_dir: %q holds no dbt_project.yml", c.ProjectDir)
		}
	}
	return errors.Join(errs...)
}
