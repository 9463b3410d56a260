// Package audit writes the audit trail: one JSON object per line for every
// query answered (by `fhirlake serve` or `fhirlake query`), every compaction
// and every erasure — who did what to which tenant's data, when, and with
// what result. It is the HIPAA audit record (docs/operations.md, "The audit
// trail"); how long it is kept is the log pipeline's business.
//
// A Writer owns one goroutine that encodes and writes the records. Callers
// hand a record over a bounded channel; when it is full they wait at most
// Options.Wait, then the record is dropped, counted and logged (its fields,
// without the SQL, so that the process log still holds its essentials).
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// Kinds of record.
const (
	// KindQuery is a POST /v1/tenants/{tenant}/query or a `fhirlake query`.
	KindQuery = "query"
	// KindTables is a GET /v1/tenants/{tenant}/tables or `fhirlake query --views`.
	KindTables = "tables"
	// KindStatus is a GET /v1/status/tenants/{tenant}.
	KindStatus = "status"
	// KindCompaction is one tenant's run of `fhirlake compact`.
	KindCompaction = "compaction"
	// KindErasure is the erasure of one patient's data from a tenant's lake.
	KindErasure = "erasure"
)

// Sources: the process that wrote a record.
const (
	SourceServe   = "serve"
	SourceCLI     = "cli"
	SourceCompact = "compact"
	SourceErase   = "erase"
)

// Protocols of serve's records.
const (
	ProtocolHTTP      = "http"
	ProtocolFlightSQL = "flight_sql"
)

// Version is the record's format, in its "audit" field: a field is only
// ever added, never renamed or given another meaning, without a new version.
const Version = 1

// StatusOK is the status of a record whose action succeeded. Any other
// status is an error code: the API's (statement_refused, queue_full,
// query_timeout, unauthorized, …) or a compaction's result.
const StatusOK = "ok"

// Record is one line of the audit trail. Field names are stable (see
// Version); empty optional fields are left out.
type Record struct {
	// Audit is Version; a log pipeline routes the trail on this field.
	Audit int `json:"audit"`
	// Time is when the action ended, in UTC.
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	// Source is the process: serve, cli, compact or erase.
	Source string `json:"source"`
	Tenant string `json:"tenant"`
	// Key is who acted: the API key's name (serve), the operating-system
	// user (the commands). Empty for a request without a known key.
	Key string `json:"key,omitempty"`
	// RequestID is the request's Fhirlake-Request-Id, the key of its log lines.
	RequestID string `json:"request_id,omitempty"`
	// Remote is the client's address (serve).
	Remote string `json:"remote,omitempty"`
	// SQL is the statement as received (audit.sql: full); SQLSHA256 its
	// SHA-256 in lowercase hex (audit.sql: sha256). Neither with none.
	SQL       string `json:"sql,omitempty"`
	SQLSHA256 string `json:"sql_sha256,omitempty"`
	// Rows returned (queries), or the resources of the published snapshot
	// (compactions).
	Rows int64 `json:"rows"`
	// Bytes of the response sent (queries).
	Bytes int64 `json:"bytes"`
	// DurationMS is from the request's arrival (or the command's start) to
	// its end, in milliseconds.
	DurationMS float64 `json:"duration_ms"`
	// Status is StatusOK or what went wrong; see StatusOK.
	Status string `json:"status"`
	// Protocol is how serve was asked: "http" (the HTTP API) or
	// "flight_sql" (Arrow Flight SQL). Empty for the commands.
	Protocol string `json:"protocol,omitempty"`
	// HTTPStatus is the response's status code (serve).
	HTTPStatus int `json:"http_status,omitempty"`
	// Snapshot is the tenant's batch snapshot after a compaction (or the
	// erasure's new one).
	Snapshot string `json:"snapshot,omitempty"`
	// PatientSHA256 is the SHA-256 of the erased patient's id: the record
	// proves which patient was erased to whoever knows the id, without
	// keeping the identifier the erasure removed.
	PatientSHA256 string `json:"patient_sha256,omitempty"`
	// Reason says more about a compaction's or an erasure's result: why a
	// run was a full refresh, which dbt nodes failed.
	Reason string `json:"reason,omitempty"`
}

// SQLMode is what a record keeps of the statement.
type SQLMode string

// SQL modes.
const (
	SQLFull   SQLMode = "full"
	SQLSHA256 SQLMode = "sha256"
	SQLNone   SQLMode = "none"
)

// ParseSQLMode checks a configured mode.
func ParseSQLMode(s string) (SQLMode, error) {
	switch m := SQLMode(s); m {
	case SQLFull, SQLSHA256, SQLNone:
		return m, nil
	}
	return "", fmt.Errorf("audit.sql: %q is not full, sha256 or none", s)
}

// apply keeps of r's SQL what mode says.
func (m SQLMode) apply(r *Record) {
	switch m {
	case SQLFull:
		r.SQLSHA256 = ""
	case SQLSHA256:
		r.SQLSHA256 = ""
		if r.SQL != "" {
			r.SQLSHA256 = SHA256(r.SQL)
		}
		r.SQL = ""
	default:
		r.SQL, r.SQLSHA256 = "", ""
	}
}

// SHA256 is the lowercase hex SHA-256 of s.
func SHA256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
