package bulkexport

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Bounds of a manifest.
const (
	// MaxManifestBytes bounds the manifest read from the status URL.
	MaxManifestBytes = 16 << 20
	// MaxFiles bounds the files (output, deleted and error together) one
	// manifest may list.
	MaxFiles = 100_000
)

// Manifest is the completed export's answer from the status URL.
type Manifest struct {
	// TransactionTime is the time the export reflects: the next export of
	// the same source asks for _since=TransactionTime.
	TransactionTime time.Time `json:"transactionTime"`
	// Request is the kick-off URL as the server understood it.
	Request string `json:"request"`
	// RequiresAccessToken says the files are fetched with the bearer token.
	RequiresAccessToken bool `json:"requiresAccessToken"`
	// Output are the resources, Deleted the resources deleted since _since
	// (NDJSON of transaction Bundles with DELETE entries), Error the
	// OperationOutcomes of what the server could not export.
	Output  []Output `json:"output"`
	Deleted []Output `json:"deleted,omitempty"`
	Error   []Output `json:"error,omitempty"`
}

// Output is one file of a manifest.
type Output struct {
	Type string `json:"type"`
	// URL is absolute once the manifest is parsed.
	URL string `json:"url"`
	// Count is the resources the file holds, when the server says.
	Count *int64 `json:"count,omitempty"`
}

// manifestJSON is the manifest as sent; transactionTime is a FHIR instant,
// which encoding/json's RFC 3339 parser may refuse for its precision.
type manifestJSON struct {
	TransactionTime     string   `json:"transactionTime"`
	Request             string   `json:"request"`
	RequiresAccessToken bool     `json:"requiresAccessToken"`
	Output              []Output `json:"output"`
	Deleted             []Output `json:"deleted"`
	Error               []Output `json:"error"`
}

// ParseManifest reads a manifest and checks it: a transactionTime, at most
// MaxFiles files, each with a resource type (for output and deleted files)
// and an http or https URL, resolved against base when relative.
func ParseManifest(b []byte, base *url.URL) (*Manifest, error) {
	if len(b) > MaxManifestBytes {
		return nil, fmt.Errorf("manifest: %d bytes, at most %d", len(b), MaxManifestBytes)
	}
	var mj manifestJSON
	if err := json.Unmarshal(b, &mj); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if mj.TransactionTime == "" {
		return nil, errors.New("manifest: no transactionTime")
	}
	tt, err := parseInstant(mj.TransactionTime)
	if err != nil {
		return nil, fmt.Errorf("manifest: transactionTime: %w", err)
	}
	if n := len(mj.Output) + len(mj.Deleted) + len(mj.Error); n > MaxFiles {
		return nil, fmt.Errorf("manifest: %d files, at most %d", n, MaxFiles)
	}
	m := &Manifest{TransactionTime: tt, Request: mj.Request, RequiresAccessToken: mj.RequiresAccessToken}
	for _, l := range []struct {
		name     string
		in       []Output
		out      *[]Output
		needType bool
	}{
		{"output", mj.Output, &m.Output, true},
		{"deleted", mj.Deleted, &m.Deleted, true},
		{"error", mj.Error, &m.Error, false},
	} {
		for i, o := range l.in {
			if l.needType && !typeName.MatchString(o.Type) {
				return nil, fmt.Errorf("manifest: %s[%d]: type %q is not a resource type", l.name, i, clip(o.Type))
			}
			if o.Count != nil && *o.Count < 0 {
				return nil, fmt.Errorf("manifest: %s[%d]: count %d", l.name, i, *o.Count)
			}
			u, err := fileURL(o.URL, base)
			if err != nil {
				return nil, fmt.Errorf("manifest: %s[%d]: %w", l.name, i, err)
			}
			o.URL = u
			*l.out = append(*l.out, o)
		}
	}
	return m, nil
}

func fileURL(s string, base *url.URL) (string, error) {
	if s == "" {
		return "", errors.New("no url")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("url %q: %w", clip(s), err)
	}
	if base != nil {
		u = base.ResolveReference(u)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("url %q: not an http or https URL", clip(s))
	}
	return u.String(), nil
}

// parseInstant reads a FHIR instant: RFC 3339 with seconds, an optional
// fraction and a zone.
func parseInstant(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a FHIR instant", clip(s))
	}
	return t, nil
}
