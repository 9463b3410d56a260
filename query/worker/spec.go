// Package worker runs each tenant's SQL in a process of its own: a
// Supervisor in the front starts, forwards to, restarts and stops one
// worker per tenant in use; Main is the worker, serving its one tenant's
// query routes on a Unix socket, confined (package sandbox) before it
// opens anything of the tenant.
package worker

import (
	"time"

	"fhirlake/config"
	"fhirlake/query"
)

// Spec is everything a worker gets, on its stdin, never in argv or its
// environment: its one tenant's configuration and credentials, where to
// listen and what bounds it.
type Spec struct {
	Tenant config.Tenant `json:"tenant"`
	// Env holds the values of the tenant's credential variables
	// (store.access_key_env, …), which the worker's own environment lacks.
	Env map[string]string `json:"env,omitempty"`
	// Socket is the Unix socket to listen on, in a directory only the
	// front's user can enter.
	Socket string `json:"socket"`
	// Token is the key the front presents on every request.
	Token string `json:"token"`
	// Root is the local lake DuckDB reads; empty for an S3 tenant, whose
	// bucket DuckDB reads directly (Session.HTTPFSExtension).
	Root string `json:"root"`
	// TempDir is the worker's own, for DuckDB's spill files; the only
	// place it may write.
	TempDir string `json:"temp_dir"`

	Session         query.Options `json:"session"`
	RefreshInterval time.Duration `json:"refresh_interval"`
	MaxRequestBytes int64         `json:"max_request_bytes"`
	MaxResultRows   int           `json:"max_result_rows"`
	MaxResultBytes  int64         `json:"max_result_bytes"`
	// TenantLabels names the tenant in the worker's metrics
	// (serve.metrics_tenant_labels).
	TenantLabels bool `json:"tenant_labels,omitempty"`
	// Grace is how long a request may run on after its context ends (the
	// front gave up on it) before the worker exits rather than go on.
	Grace time.Duration `json:"grace"`
	// NoLandlock runs the worker without Landlock (a kernel without it).
	NoLandlock bool `json:"no_landlock,omitempty"`
	// RawSQLForTests serves POST /test/raw-sql: SQL run on a DuckDB
	// without the session's checks, to show what the sandbox alone
	// stops. Only tests set it.
	RawSQLForTests bool `json:"raw_sql_for_tests,omitempty"`
	// NoWatchdogForTests keeps a worker running past the grace period,
	// for the front to kill. Only tests set it.
	NoWatchdogForTests bool `json:"no_watchdog_for_tests,omitempty"`
}
