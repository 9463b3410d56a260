package lake

import (
	"encoding/json"
	"fmt"
	"strings"
)

// IcebergKey names the tables the batch snapshot is published as, for the query
// server (docs/format/iceberg.md, "The pointer"): written by the compactor with the
// tenant's key after the last table's commit of a snapshot, and only then.
const IcebergKey = "_manifest/iceberg.json"

// IcebergPointer is the content of IcebergKey: the snapshot the tables hold and, per
// model, its table's metadata file at that snapshot. A reader that finds the
// pointer at the snapshot of ManifestKey reads each model through its table.
type IcebergPointer struct {
	// SnapshotID is the fhirlake snapshot (Manifest.SnapshotID) every table holds.
	SnapshotID string `json:"snapshot_id"`
	// Tables maps every model of the snapshot to its table.
	Tables map[string]IcebergTable `json:"tables"`
}

// IcebergTable is one model's table at the pointer's snapshot.
type IcebergTable struct {
	// Table is the table's name in the tenant's namespace.
	Table string `json:"table"`
	// MetadataLocation is the table's metadata file holding the snapshot: a
	// location under the tenant's lake root.
	MetadataLocation string `json:"metadata_location"`
	// SnapshotID is the table's Iceberg snapshot holding the model.
	SnapshotID int64 `json:"snapshot_id"`
}

// maxIcebergPointer bounds the pointer a reader accepts: a few hundred bytes per
// model.
const maxIcebergPointer = 1 << 20

// Encode returns the pointer as the compactor stores it, validated against root.
func (p *IcebergPointer) Encode(root string) ([]byte, error) {
	if err := p.Validate(root); err != nil {
		return nil, fmt.Errorf("encode %s: %w", IcebergKey, err)
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", IcebergKey, err)
	}
	return append(b, '\n'), nil
}

// DecodeIcebergPointer reads and validates a pointer found under the lake root
// root (s3://bucket/prefix or a directory, without a trailing slash). The object
// is the tenant's to write, so it is checked as hostile input: every metadata
// location must be a metadata file under root, so that a reader never follows it
// out of the tenant's own lake.
func DecodeIcebergPointer(b []byte, root string) (*IcebergPointer, error) {
	if len(b) > maxIcebergPointer {
		return nil, fmt.Errorf("read %s: %d bytes, more than %d", IcebergKey, len(b), maxIcebergPointer)
	}
	p := &IcebergPointer{}
	if err := json.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("read %s: %w", IcebergKey, err)
	}
	if err := p.Validate(root); err != nil {
		return nil, fmt.Errorf("read %s: %w", IcebergKey, err)
	}
	return p, nil
}

// Validate checks the pointer: a valid snapshot id, at least one model, valid model
// and table names, and every metadata location a metadata file under root.
func (p *IcebergPointer) Validate(root string) error {
	if !ValidSnapshotID(p.SnapshotID) {
		return fmt.Errorf("invalid snapshot_id %q", p.SnapshotID)
	}
	if len(p.Tables) == 0 {
		return fmt.Errorf("no tables")
	}
	for model, t := range p.Tables {
		if !ValidModelName(model) {
			return fmt.Errorf("invalid model name %q", model)
		}
		if !ValidModelName(t.Table) {
			return fmt.Errorf("model %s: invalid table name %q", model, t.Table)
		}
		if _, err := MetadataKey(t.MetadataLocation, root); err != nil {
			return fmt.Errorf("model %s: %w", model, err)
		}
	}
	return nil
}

// MetadataKey is the key under root of an Iceberg metadata file at location, or an
// error when location is not one: it must be root, a slash, and a clean key of
// letters, digits and "-_.=/" ending in .metadata.json in a metadata/ directory.
func MetadataKey(location, root string) (string, error) {
	if root == "" || strings.HasSuffix(root, "/") {
		return "", fmt.Errorf("lake root %q: not a root without a trailing slash", root)
	}
	key, ok := strings.CutPrefix(location, root+"/")
	if !ok {
		return "", fmt.Errorf("metadata location %q is outside the lake %s", location, root)
	}
	if !CleanKey(key) || !metadataKeyChars(key) || !strings.HasSuffix(key, ".metadata.json") ||
		!strings.Contains("/"+key, "/metadata/") {
		return "", fmt.Errorf("metadata location %q is not a table's metadata file under %s", location, root)
	}
	return key, nil
}

func metadataKeyChars(key string) bool {
	for _, r := range key {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && !strings.ContainsRune("-_.=/", r) {
			return false
		}
	}
	return true
}
