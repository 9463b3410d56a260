package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Iceberg configures the deployment's Apache Iceberg catalog: `fhirlake register`
// keeps every tenant's changes readable as Iceberg tables by other engines, and
// `fhirlake compact` publishes each batch snapshot as tables beside them
// (docs/format/iceberg.md). Off unless Catalog is set.
type Iceberg struct {
	// Catalog is the catalog's type: "sql" (a SQLite file, or PostgreSQL) or "rest"
	// (an Iceberg REST service). Empty: no catalog.
	Catalog string `yaml:"catalog" env:"CATALOG"`
	// URI is, for "sql", a PostgreSQL URL (postgres://…) or a SQLite database file;
	// for "rest", the service's base URL.
	URI string `yaml:"uri" env:"URI"`
	// URIEnv names the environment variable holding URI instead, for a URL that
	// carries a password.
	URIEnv string `yaml:"uri_env" env:"URI_ENV"`
	// Name is the catalog's name (the SQL catalog keys its rows by it). Default: fhirlake.
	Name string `yaml:"name" env:"NAME"`
	// TokenEnv names the environment variable holding a REST catalog's bearer token.
	TokenEnv string `yaml:"token_env" env:"TOKEN_ENV"`
	// Warehouse is where each tenant's tables live: a key prefix in the tenant's own
	// store. Default: _iceberg.
	Warehouse string `yaml:"warehouse" env:"WAREHOUSE"`
	// Interval is how often `fhirlake register` registers new speed files: the most
	// the tables lag behind the consumer's files, and one catalog commit per table that
	// changed. Default: 1m.
	Interval time.Duration `yaml:"interval" env:"INTERVAL"`
	// SnapshotRetention expires the change tables' snapshots older than this (their
	// metadata only: the data files are the speed files); the batch tables keep the
	// snapshots of compact.keep_snapshots instead. Default: 24h.
	SnapshotRetention time.Duration `yaml:"snapshot_retention" env:"SNAPSHOT_RETENTION"`
	// KeepSnapshots is how many snapshots of each table survive expiry whatever their
	// age. Default: 10.
	KeepSnapshots int `yaml:"keep_snapshots" env:"KEEP_SNAPSHOTS"`
}

// DefaultIceberg is the section's defaults; the catalog itself stays off.
func DefaultIceberg() Iceberg {
	return Iceberg{Name: "fhirlake", Warehouse: "_iceberg", Interval: time.Minute,
		SnapshotRetention: 24 * time.Hour, KeepSnapshots: 10}
}

// Enabled reports a configured catalog.
func (c Iceberg) Enabled() bool { return c.Catalog != "" }

// CatalogURI is URI, or the variable URIEnv names.
func (c Iceberg) CatalogURI() string {
	if c.URIEnv != "" {
		return os.Getenv(c.URIEnv)
	}
	return c.URI
}

// Validate reports every problem with the section at once, each naming its key.
func (c Iceberg) Validate() error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("iceberg."+format, args...)) }
	switch c.Catalog {
	case "sql", "rest":
	default:
		bad("catalog: must be sql or rest, got %q", c.Catalog)
	}
	switch {
	case c.URI != "" && c.URIEnv != "":
		bad("uri and uri_env: set one, not both")
	case c.URIEnv != "" && os.Getenv(c.URIEnv) == "":
		bad("uri_env: %s is not set", c.URIEnv)
	case c.CatalogURI() == "":
		bad("uri: required with catalog %s", c.Catalog)
	case c.Catalog == "rest" && !strings.HasPrefix(c.CatalogURI(), "http://") && !strings.HasPrefix(c.CatalogURI(), "https://"):
		bad("uri: a rest catalog's uri is http:// or https://")
	}
	if c.TokenEnv != "" && c.Catalog != "rest" {
		bad("token_env: only a rest catalog takes a token")
	}
	if c.Name == "" {
		bad("name: required")
	}
	if c.Warehouse == "" || strings.HasPrefix(c.Warehouse, "/") || strings.Contains(c.Warehouse, "..") {
		bad("warehouse: a relative key prefix in each tenant's store, got %q", c.Warehouse)
	}
	if c.Interval < time.Second {
		bad("interval: must be at least 1s, got %s", c.Interval)
	}
	if c.SnapshotRetention < 0 {
		bad("snapshot_retention: must not be negative")
	}
	if c.KeepSnapshots < 1 {
		bad("keep_snapshots: must be at least 1, got %d", c.KeepSnapshots)
	}
	return errors.Join(errs...)
}
