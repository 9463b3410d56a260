package config

// Audit configures the audit trail: one JSON line for every query answered by
// `fhirlake serve` or `fhirlake query`, every compaction and every erasure
// (docs/operations.md, "The audit trail").
type Audit struct {
	// Path is where the records go: "stderr" (or "-") and "stdout" the
	// process's streams, "off" nowhere, anything else a file appended to
	// (created 0600). Default: stderr — on, where a container's log
	// pipeline collects it, told from the logs by its "audit" field. A
	// file must be writable before a command confines itself.
	Path string `yaml:"path" env:"PATH"`
	// SQL is what a query's record keeps of its statement: "full" the text
	// as received, "sha256" its SHA-256 (for a pipeline that must not hold
	// the literals a statement may quote, such as a patient's name),
	// "none" nothing. Default: full.
	SQL string `yaml:"sql" env:"SQL"`
}

// DefaultAudit returns the defaults documented on Audit.
func DefaultAudit() Audit {
	return Audit{Path: "stderr", SQL: "full"}
}

func (a Audit) validate() error {
	var p problems
	if a.Path == "" {
		p.add("audit.path: empty; use off to write no audit records")
	}
	switch a.SQL {
	case "full", "sha256", "none":
	default:
		p.add("audit.sql: %q is not full, sha256 or none", a.SQL)
	}
	return p.err()
}
