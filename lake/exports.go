package lake

import (
	"encoding/json"
	"fmt"
	"time"
)

// ExportsKey records, per source, the transactionTime of the last FHIR Bulk
// Data export loaded into the tenant's lake, so that the next one asks only for
// what changed since (`fhirlake backfill --from-server … --since-last`;
// docs/format/exports.md).
const ExportsKey = "_backfill/exports.json"

// ExportsVersion is the format of the document this package writes, and the
// newest it reads.
const ExportsVersion = 1

// MaxExportSources bounds the sources one document records.
const MaxExportSources = 1000

// Exports is the document at ExportsKey.
type Exports struct {
	Version int    `json:"version"`
	Tenant  string `json:"tenant"`
	// Sources holds one entry per export request, in the order first recorded.
	Sources []ExportSource `json:"sources"`
}

// ExportSource is the last export loaded from one request.
type ExportSource struct {
	// Request is the kick-off URL without _since: the server's base, the
	// level (system, Patient, Group/<id>) and the other parameters. Exports
	// that differ in anything else are different sources.
	Request string `json:"request"`
	// TransactionTime is the server's transactionTime of the export, from its
	// manifest.
	TransactionTime time.Time `json:"transaction_time"`
	// NextSince is the _since of the source's next export: TransactionTime,
	// or the server's Date on the kick-off's answer when that is earlier (a
	// server may stamp an export after it read the data).
	NextSince time.Time `json:"next_since"`
	// Loaded is when every file of the export was in the lake.
	Loaded time.Time `json:"loaded"`
	// Files and Resources count what the export held.
	Files     int   `json:"files"`
	Resources int64 `json:"resources"`
}

// Last returns the entry of request, if any.
func (e *Exports) Last(request string) (ExportSource, bool) {
	for _, s := range e.Sources {
		if s.Request == request {
			return s, true
		}
	}
	return ExportSource{}, false
}

// Record replaces the entry of s.Request by s, or adds it.
func (e *Exports) Record(s ExportSource) {
	for i := range e.Sources {
		if e.Sources[i].Request == s.Request {
			e.Sources[i] = s
			return
		}
	}
	e.Sources = append(e.Sources, s)
}

// Validate checks a version this package reads, and entries with a request,
// both times, no count below zero and no request twice.
func (e *Exports) Validate() error {
	if e.Version < 1 || e.Version > ExportsVersion {
		return fmt.Errorf("version %d: this build reads version 1 to %d", e.Version, ExportsVersion)
	}
	if len(e.Sources) > MaxExportSources {
		return fmt.Errorf("%d sources, at most %d", len(e.Sources), MaxExportSources)
	}
	seen := make(map[string]bool, len(e.Sources))
	for i, s := range e.Sources {
		switch {
		case s.Request == "":
			return fmt.Errorf("sources[%d]: no request", i)
		case seen[s.Request]:
			return fmt.Errorf("sources[%d]: request %s recorded twice", i, s.Request)
		case s.TransactionTime.IsZero() || s.NextSince.IsZero() || s.Loaded.IsZero():
			return fmt.Errorf("sources[%d]: no transaction_time, next_since or loaded time", i)
		case s.NextSince.After(s.TransactionTime):
			return fmt.Errorf("sources[%d]: next_since after transaction_time", i)
		case s.Files < 0 || s.Resources < 0:
			return fmt.Errorf("sources[%d]: a negative count", i)
		}
		seen[s.Request] = true
	}
	return nil
}

// Encode returns the document as it is stored: indented JSON and a newline.
func (e *Exports) Encode() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("encode %s: %w", ExportsKey, err)
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", ExportsKey, err)
	}
	return append(b, '\n'), nil
}

// DecodeExports reads and validates the content of the document.
func DecodeExports(b []byte) (*Exports, error) {
	e := &Exports{}
	if err := json.Unmarshal(b, e); err != nil {
		return nil, fmt.Errorf("read %s: %w", ExportsKey, err)
	}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("read %s: %w", ExportsKey, err)
	}
	return e, nil
}
