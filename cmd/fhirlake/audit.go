package main

import (
	"log/slog"
	"os/user"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"fhirlake/audit"
	"fhirlake/compactor"
	"fhirlake/config"
)

// openAudit starts the audit trail's writer as configured; nil when it is
// off. Its metrics go to reg (nil: nowhere).
func openAudit(c config.Audit, reg prometheus.Registerer, log *slog.Logger) (*audit.Writer, error) {
	return audit.Open(audit.Options{Path: c.Path, SQL: audit.SQLMode(c.SQL)}, reg, log)
}

// actor is who runs a command, for its audit records: the operating-system
// user, or "cli" when it has no name.
func actor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "cli"
}

// auditCompactions writes one record per tenant of a compaction run; err
// is the run's, whose part for a failed tenant becomes its reason.
func auditCompactions(w *audit.Writer, ts []compactor.Tenant, results []*compactor.Result, err error, started time.Time) {
	if w == nil {
		return
	}
	who := actor()
	for i, t := range ts {
		rec := audit.Record{Kind: audit.KindCompaction, Source: audit.SourceCompact, Tenant: t.Name, Key: who}
		if r := results[i]; r == nil {
			rec.Status = "not_run"
			rec.DurationMS = float64(time.Since(started).Microseconds()) / 1000
		} else {
			rec.Status, rec.Reason = compactionStatus(r)
			if rec.Reason == "" && rec.Status == "failed" {
				rec.Reason = tenantError(err, t.Name)
			}
			rec.Snapshot = r.SnapshotID
			rec.DurationMS = float64(r.Duration.Microseconds()) / 1000
			if m, ok := r.Models["int_resources__latest"]; ok {
				rec.Rows = m.Rows
			}
		}
		w.Write(rec)
	}
}

// compactionStatus is a tenant's result as an audit status, and why.
func compactionStatus(r *compactor.Result) (string, string) {
	switch {
	case r.Held != nil:
		return "skipped", "lease held by " + r.Held.Holder.Host
	case r.UpToDate:
		return "up_to_date", ""
	case !r.Published:
		failed := make([]string, 0, len(r.Failed))
		for _, n := range r.Failed {
			failed = append(failed, n.UniqueID)
		}
		return "failed", strings.Join(failed, ", ")
	case r.FullRefresh:
		return "published", "full refresh: " + r.Reason
	}
	return "published", ""
}

// tenantError is the part of a compaction run's error about tenant (each
// tenant's is "tenant NAME: …"), at most 512 bytes of it.
func tenantError(err error, tenant string) string {
	if err == nil {
		return ""
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		if msg := e.Error(); strings.HasPrefix(msg, "tenant "+tenant+": ") {
			if len(msg) > 512 {
				msg = msg[:512]
			}
			return msg
		}
	}
	return ""
}
