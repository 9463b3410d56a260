package lake

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ManifestVersion is the format of the manifest this package writes, and the newest
// it reads (docs/format/snapshot.md). Version 2 added a state model's parts: base
// files carried from an earlier snapshot, and the changed keys and delta rows since
// (Model.Changed, Model.Delta). A version 1 manifest reads as one whose state models
// are bases with nothing changed.
const ManifestVersion = 2

// Manifest describes the current batch snapshot of a tenant, at ManifestKey
// (docs/format/snapshot.md). The compactor writes it after every file of the
// snapshot, so until it is replaced, readers stay on the snapshot it names. Readers
// ignore fields they do not know.
type Manifest struct {
	Version int    `json:"version"`
	Tenant  string `json:"tenant"`
	// SnapshotID names the snapshot: its files are under batch/<SnapshotID>/.
	SnapshotID string    `json:"snapshot_id"`
	Created    time.Time `json:"created"`
	// Watermark is the newest speed file the snapshot includes: every speed file
	// modified before Watermark.Modified minus the overlap is in it (or was
	// superseded). A reader completes the snapshot with the speed files modified
	// after Watermark.Modified minus the overlap (TailStart); re-reading one is
	// harmless.
	Watermark Watermark `json:"watermark"`
	// FullRefresh is true when the snapshot was rebuilt from the speed layer alone.
	FullRefresh bool `json:"full_refresh"`
	// SpeedFiles is how many speed files the run that built it read.
	SpeedFiles int `json:"speed_files"`
	// Previous is the snapshot this one was built on; empty after a full refresh.
	Previous string `json:"previous,omitempty"`
	// History lists the earlier published snapshots still kept, newest first.
	History []string `json:"history,omitempty"`
	// SpeedExpiredBefore is set once expiry has deleted speed files: those modified
	// before it exist only in the snapshots, so a full refresh would lose them.
	SpeedExpiredBefore time.Time `json:"speed_expired_before,omitzero"`
	// Project fingerprints the dbt project that built the snapshot; a run with another
	// project rebuilds from the speed layer, since the state tables may differ.
	Project string `json:"project"`
	// Models are the snapshot's tables: the marts and the state models (StateModel).
	Models map[string]Model `json:"models"`
	// DBT records the dbt run.
	DBT RunInfo `json:"dbt"`
}

// Watermark orders speed files by modification time, then key.
type Watermark struct {
	Modified time.Time `json:"modified"`
	Key      string    `json:"key,omitempty"`
}

// Before reports whether f comes after the watermark: modified later, or at the same
// time with a greater key.
func (w Watermark) Before(f SpeedFile) bool {
	if !f.Modified.Equal(w.Modified) {
		return f.Modified.After(w.Modified)
	}
	return f.Key > w.Key
}

// Model is one table of a snapshot. A model without Changed and Delta is its Files. A
// state model (StateModel), and a mart with one row per resource, may be read
// merge-on-read, as Iceberg v2 reads a table with equality deletes: the rows of its
// base (Files) whose key (MergeKey) is not in Changed, and every row of Delta
// (MergeSQL, ModelSQL).
type Model struct {
	// Rows and Bytes count the rows and bytes of Files.
	Rows  int64 `json:"rows"`
	Bytes int64 `json:"bytes"`
	// Files are the keys of the table's Parquet files, its base: under
	// batch/<snapshot-id>/<model>/ of this snapshot; a merged model's (a state
	// model's, or a mart's with Changed or Delta) under the same directory of the
	// snapshot that wrote it (this one, or an earlier one: carried by reference).
	Files []string `json:"files"`
	// Changed are the keys of every resource changed since the base was written:
	// base rows of these keys are superseded. Nil when nothing changed.
	Changed *Part `json:"changed,omitempty"`
	// Delta are the current rows of the Changed keys (a view's: deletes removed).
	Delta *Part `json:"delta,omitempty"`
	// Key are the columns Changed holds and rows are merged on; empty for
	// StateKeyColumns. A mart merged on read names its id column (observation_id).
	Key []string `json:"key,omitempty"`
}

// MergeKey are the columns the model's rows are merged on: Key, or StateKeyColumns.
func (m Model) MergeKey() []string {
	if len(m.Key) > 0 {
		return m.Key
	}
	return StateKeyColumns
}

// Part is the changed keys or the delta rows of a model merged on read: files under
// batch/<snapshot-id>/<model>/ of the snapshot that names them.
type Part struct {
	Rows  int64    `json:"rows"`
	Bytes int64    `json:"bytes"`
	Files []string `json:"files"`
}

// PartFiles are the keys of a part; none for nil.
func (p *Part) PartFiles() []string {
	if p == nil {
		return nil
	}
	return p.Files
}

// Keys are every key the model references: its files, its changed keys' and its
// delta's.
func (m Model) Keys() []string {
	out := append([]string(nil), m.Files...)
	out = append(out, m.Changed.PartFiles()...)
	return append(out, m.Delta.PartFiles()...)
}

// Merged reports whether the model is read merge-on-read, its base with changed keys
// and a delta; false for a mart or a base with nothing changed since.
func (m Model) Merged() bool { return m.Changed != nil || m.Delta != nil }

// RunInfo is what the manifest keeps of the dbt run.
type RunInfo struct {
	Version        string  `json:"version,omitempty"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	Models         int     `json:"models"`
	Tests          int     `json:"tests"`
}

// Prefix is the key prefix of the snapshot's files, batch/<SnapshotID>/.
func (m *Manifest) Prefix() string { return SnapshotPrefix(m.SnapshotID) }

// TailStart is when the snapshot's speed tail starts for a reader that re-reads
// overlap before the watermark: the speed files modified at or after it are read
// beside the snapshot, those modified before are in it. The overlap must be at least
// the compactor's, since an object is dated by when its upload began.
func (m *Manifest) TailStart(overlap time.Duration) time.Time {
	return m.Watermark.Modified.Add(-overlap)
}

// ModelNames are the snapshot's tables, sorted.
func (m *Manifest) ModelNames() []string {
	names := make([]string, 0, len(m.Models))
	for n := range m.Models {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Files are the local paths of a model's files in a lake rooted at the directory
// root (a state model's base); nil for a model the snapshot does not have.
func (m *Manifest) Files(root, model string) ([]string, error) {
	return m.paths(root, model, m.Models[model].Files, true)
}

// ChangedFiles and DeltaFiles are the local paths of a state model's changed keys
// and delta rows in a lake rooted at root; nil when it has none.
func (m *Manifest) ChangedFiles(root, model string) ([]string, error) {
	return m.paths(root, model, m.Models[model].Changed.PartFiles(), false)
}

// DeltaFiles: see ChangedFiles.
func (m *Manifest) DeltaFiles(root, model string) ([]string, error) {
	return m.paths(root, model, m.Models[model].Delta.PartFiles(), false)
}

func (m *Manifest) paths(root, model string, keys []string, base bool) ([]string, error) {
	var out []string
	for _, key := range keys {
		if !m.holds(model, key, base) {
			return nil, fmt.Errorf("manifest: model %s: file %q is outside %s", model, key, ModelKey(m.SnapshotID, model, ""))
		}
		out = append(out, filepath.Join(root, filepath.FromSlash(key)))
	}
	return out, nil
}

// holds reports whether key is a clean key of a file of model: in this snapshot's
// directory of the model, or, for the base of a state model or of a mart merged on
// read (carried by reference), in that model's directory of any snapshot.
func (m *Manifest) holds(model, key string, base bool) bool {
	if !CleanKey(key) {
		return false
	}
	if strings.HasPrefix(key, ModelKey(m.SnapshotID, model, "")) {
		return true
	}
	if _, state := ParseStateModel(model); !base || !state && !m.Models[model].Merged() {
		return false
	}
	id, ok := ParseSnapshotKey(key)
	return ok && ValidSnapshotID(id) && strings.HasPrefix(key, ModelKey(id, model, ""))
}

// Keys are every key of a file the manifest references, its models' files and
// parts, some of them under earlier snapshots' prefixes; expiry keeps them all.
func (m *Manifest) Keys() []string {
	var out []string
	for _, name := range m.ModelNames() {
		out = append(out, m.Models[name].Keys()...)
	}
	return out
}

// Validate checks what every reader relies on: a version this package reads, a
// valid snapshot id, at least one model, valid model names, and model files that
// are clean keys inside their model's directory of the snapshot (a state model's
// base, and a merged mart's: of any snapshot), so that joining one to a local root
// cannot leave it; a mart merged on read names its key columns.
func (m *Manifest) Validate() error {
	switch {
	case m.Version < 1 || m.Version > ManifestVersion:
		return fmt.Errorf("version %d: this build reads version 1 to %d", m.Version, ManifestVersion)
	case !ValidSnapshotID(m.SnapshotID):
		return fmt.Errorf("snapshot id %q is not valid", m.SnapshotID)
	case len(m.Models) == 0:
		return errors.New("no models")
	}
	for _, name := range m.ModelNames() {
		if !ValidModelName(name) {
			return fmt.Errorf("model name %q is not valid", name)
		}
		mod := m.Models[name]
		if _, state := ParseStateModel(name); !state && mod.Merged() && len(mod.Key) == 0 {
			return fmt.Errorf("model %s: a mart with changed keys or a delta names its key", name)
		}
		for _, k := range mod.Key {
			if !ValidModelName(k) {
				return fmt.Errorf("model %s: key column %q is not valid", name, k)
			}
		}
		for _, key := range mod.Files {
			if !m.holds(name, key, true) {
				return fmt.Errorf("model %s: file %q is outside %s", name, key, ModelKey(m.SnapshotID, name, ""))
			}
		}
		for _, key := range append(mod.Changed.PartFiles(), mod.Delta.PartFiles()...) {
			if !m.holds(name, key, false) {
				return fmt.Errorf("model %s: file %q is outside %s", name, key, ModelKey(m.SnapshotID, name, ""))
			}
		}
	}
	return nil
}

// Encode returns the manifest as the compactor stores it: indented JSON and a
// newline. It refuses a manifest that Validate refuses, which no reader would take.
func (m *Manifest) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("encode %s: %w", ManifestKey, err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", ManifestKey, err)
	}
	return append(b, '\n'), nil
}

// DecodeManifest reads and validates the content of a manifest.
func DecodeManifest(b []byte) (*Manifest, error) {
	m := &Manifest{}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("read %s: %w", ManifestKey, err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("read %s: %w", ManifestKey, err)
	}
	return m, nil
}

// ReadManifest reads and validates ManifestKey of the lake in fsys (os.DirFS of a
// tenant's root); nil without an error when the lake has none yet, before the
// first compaction.
func ReadManifest(fsys fs.FS) (*Manifest, error) {
	b, err := fs.ReadFile(fsys, ManifestKey)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ManifestKey, err)
	}
	return DecodeManifest(b)
}
