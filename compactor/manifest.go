package compactor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"fhirlake/sink"
)

// ManifestVersion is the format of _manifest/batch.json written by this package.
const ManifestVersion = 1

// Manifest describes the current batch snapshot of a tenant. It is the last object a
// run writes; until it is replaced, readers stay on the snapshot it names.
type Manifest struct {
	Version int    `json:"version"`
	Tenant  string `json:"tenant"`
	// SnapshotID names the snapshot: its files are under batch/<SnapshotID>/.
	SnapshotID string    `json:"snapshot_id"`
	Created    time.Time `json:"created"`
	// Watermark is the newest speed file the snapshot includes: every speed file
	// modified before Watermark.Modified minus the overlap is in it (or was
	// superseded). A reader completes the snapshot with the speed files modified after
	// Watermark.Modified minus the overlap; re-reading one is harmless.
	Watermark Watermark `json:"watermark"`
	// FullRefresh is true when the snapshot was rebuilt from the speed layer alone.
	FullRefresh bool `json:"full_refresh"`
	// SpeedFiles is how many speed files this run read.
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
	// Models are the snapshot's tables: the marts and the state models (int_*).
	Models map[string]Model `json:"models"`
	// DBT records the dbt run.
	DBT RunInfo `json:"dbt"`
}

// Watermark orders speed files by modification time, then key.
type Watermark struct {
	Modified time.Time `json:"modified"`
	Key      string    `json:"key,omitempty"`
}

// Model is one table of a snapshot.
type Model struct {
	Rows  int64    `json:"rows"`
	Bytes int64    `json:"bytes"`
	Files []string `json:"files"`
}

// RunInfo is what the manifest keeps of the dbt run.
type RunInfo struct {
	Version        string  `json:"version,omitempty"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	Models         int     `json:"models"`
	Tests          int     `json:"tests"`
}

// Prefix is the key prefix of the snapshot's files.
func (m *Manifest) Prefix() string { return BatchPrefix + m.SnapshotID + "/" }

// ModelNames are the snapshot's tables, sorted.
func (m *Manifest) ModelNames() []string {
	names := make([]string, 0, len(m.Models))
	for n := range m.Models {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (m *Manifest) validate() error {
	switch {
	case m.Version != ManifestVersion:
		return fmt.Errorf("version %d, want %d", m.Version, ManifestVersion)
	case m.SnapshotID == "" || !validSnapshotID(m.SnapshotID):
		return fmt.Errorf("snapshot id %q is not valid", m.SnapshotID)
	case len(m.Models) == 0:
		return errors.New("no models")
	}
	return nil
}

func validSnapshotID(id string) bool {
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// ReadManifest returns the tenant's current manifest, or nil when no snapshot has
// been published yet.
func ReadManifest(ctx context.Context, store sink.Store) (*Manifest, error) {
	objs, err := store.List(ctx, ManifestKey)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	found := false
	for _, o := range objs {
		if o.Key == ManifestKey {
			found = true
		}
	}
	if !found {
		return nil, nil
	}
	var buf bytes.Buffer
	if err := store.Get(ctx, ManifestKey, &buf); err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	m := &Manifest{}
	if err := json.Unmarshal(buf.Bytes(), m); err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", ManifestKey, err)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", ManifestKey, err)
	}
	return m, nil
}

// putJSON stores v as JSON under key through a local file in dir.
func putJSON(ctx context.Context, store sink.Store, dir, key string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "manifest-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return store.Put(ctx, key, filepath.Clean(f.Name()))
}
