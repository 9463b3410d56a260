package query

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ManifestKey is where the compactor publishes the current batch snapshot of
// a tenant's lake (package compactor writes it; this package only reads it).
const ManifestKey = "_manifest/batch.json"

// Manifest is what a session needs of the compactor's _manifest/batch.json:
// which snapshot is current, which speed files it already holds, and its
// tables. Unknown fields are ignored, so the compactor may add more.
type Manifest struct {
	Version    int       `json:"version"`
	Tenant     string    `json:"tenant"`
	SnapshotID string    `json:"snapshot_id"`
	Created    time.Time `json:"created"`
	// Watermark is the newest speed file the snapshot includes. Every speed
	// file modified before Watermark.Modified minus the overlap is in it.
	Watermark struct {
		Modified time.Time `json:"modified"`
		Key      string    `json:"key"`
	} `json:"watermark"`
	// Models are the snapshot's tables: marts and the state models (int_*),
	// each a list of keys under batch/<SnapshotID>/<model>/.
	Models map[string]struct {
		Rows  int64    `json:"rows"`
		Bytes int64    `json:"bytes"`
		Files []string `json:"files"`
	} `json:"models"`
	DBT struct {
		Version        string  `json:"version"`
		ElapsedSeconds float64 `json:"elapsed_seconds"`
		Models         int     `json:"models"`
		Tests          int     `json:"tests"`
	} `json:"dbt"`
}

// manifestVersion is the newest manifest format this package reads.
const manifestVersion = 1

// ModelNames are the snapshot's tables, sorted.
func (m *Manifest) ModelNames() []string {
	names := make([]string, 0, len(m.Models))
	for n := range m.Models {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Files are the local paths of a model's files under root, checked to stay
// inside the snapshot's directory.
func (m *Manifest) Files(root, model string) ([]string, error) {
	prefix := "batch/" + m.SnapshotID + "/" + model + "/"
	var out []string
	for _, key := range m.Models[model].Files {
		if !cleanKey(key) || !strings.HasPrefix(key, prefix) {
			return nil, fmt.Errorf("manifest: model %s: file %q is outside %s", model, key, prefix)
		}
		out = append(out, filepath.Join(root, filepath.FromSlash(key)))
	}
	return out, nil
}

// ReadManifest reads root/_manifest/batch.json; nil without an error when
// the lake has none yet (no compaction has run).
func ReadManifest(root string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(ManifestKey)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ManifestKey, err)
	}
	return ParseManifest(b)
}

// ParseManifest reads the content of a _manifest/batch.json.
func ParseManifest(b []byte) (*Manifest, error) {
	m := &Manifest{}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("read %s: %w", ManifestKey, err)
	}
	switch {
	case m.Version < 1 || m.Version > manifestVersion:
		return nil, fmt.Errorf("read %s: version %d: this build reads version %d", ManifestKey, m.Version, manifestVersion)
	case !validSnapshotID(m.SnapshotID):
		return nil, fmt.Errorf("read %s: snapshot id %q is not valid", ManifestKey, m.SnapshotID)
	case len(m.Models) == 0:
		return nil, fmt.Errorf("read %s: no models", ManifestKey)
	}
	for name := range m.Models {
		if !validViewName(strings.TrimPrefix(name, "int_")) && !validModelName(name) {
			return nil, fmt.Errorf("read %s: model name %q is not valid", ManifestKey, name)
		}
	}
	return m, nil
}

func validSnapshotID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// validModelName accepts dbt model names: lowercase letters, digits and
// underscores, starting with a letter.
func validModelName(n string) bool {
	if n == "" || n[0] < 'a' || n[0] > 'z' || len(n) > 128 {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// cleanKey reports whether key is a clean relative object key: no leading
// slash, no "." or ".." segment, no backslash, nothing that could resolve
// outside the directory it is joined to.
func cleanKey(key string) bool {
	if key == "" || strings.ContainsAny(key, "\\\x00") || path.Clean("/"+key) != "/"+key {
		return false
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}
