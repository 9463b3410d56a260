package compactor

import (
	"path"
	"strings"
	"time"
)

// Keys inside a tenant's store.
const (
	// ManifestKey names the current snapshot; writing it publishes one.
	ManifestKey = "_manifest/batch.json"
	// SpeedPrefix holds the speed layer: speed/<dataset>/date=YYYY-MM-DD/<file>.parquet.
	SpeedPrefix = "speed/"
	// BatchPrefix holds the snapshots: batch/<snapshot-id>/<model>/<file>.parquet.
	BatchPrefix = "batch/"
)

// SpeedFile is one file of the speed layer.
type SpeedFile struct {
	Key string
	// Dataset is the directory under speed/: resources or a view name.
	Dataset string
	// Date is the file's date partition, YYYY-MM-DD.
	Date string
	// Name is the file name inside the partition.
	Name     string
	Size     int64
	Modified time.Time
}

// ParseSpeedKey reads a speed-layer key; ok is false for anything else (a temporary
// file, a file outside the layout).
func ParseSpeedKey(key string) (f SpeedFile, ok bool) {
	rest, found := strings.CutPrefix(key, SpeedPrefix)
	if !found {
		return f, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || !validDataset(parts[0]) || !strings.HasSuffix(parts[2], ".parquet") || strings.HasPrefix(parts[2], ".") {
		return f, false
	}
	date, found := strings.CutPrefix(parts[1], "date=")
	if !found {
		return f, false
	}
	if _, err := time.Parse(time.DateOnly, date); err != nil {
		return f, false
	}
	return SpeedFile{Key: key, Dataset: parts[0], Date: date, Name: parts[2]}, true
}

func validDataset(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// snapshotTimeLayout starts every snapshot id, so that ids sort by creation time.
const snapshotTimeLayout = "20060102T150405Z"

// snapshotTime is when the snapshot with this id was started; ok is false for an id
// this package did not make.
func snapshotTime(id string) (time.Time, bool) {
	if len(id) < len(snapshotTimeLayout) {
		return time.Time{}, false
	}
	t, err := time.Parse(snapshotTimeLayout, id[:len(snapshotTimeLayout)])
	return t, err == nil
}

// snapshotOf returns the snapshot id of a key under batch/.
func snapshotOf(key string) (string, bool) {
	rest, found := strings.CutPrefix(key, BatchPrefix)
	if !found {
		return "", false
	}
	id, _, found := strings.Cut(rest, "/")
	return id, found && id != ""
}

// modelKey is where a model's file of a snapshot goes.
func modelKey(snapshot, model, file string) string {
	return path.Join(strings.TrimSuffix(BatchPrefix, "/"), snapshot, model, file)
}
