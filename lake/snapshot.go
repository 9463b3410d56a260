package lake

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"
)

// A batch snapshot's files (docs/format/snapshot.md):
//
//	batch/<snapshot-id>/<model>/data_0.parquet   one or more files per model
//	batch/<snapshot-id>/manifest.json            a copy of the manifest that published it

// snapshotTimeLayout starts every snapshot id NewSnapshotID makes, so that ids sort by
// creation time.
const snapshotTimeLayout = "20060102T150405Z"

// NewSnapshotID returns an id for a snapshot started at now: its UTC time, a dash and
// six random hex digits, sortable by time and unique across concurrent runs.
func NewSnapshotID(now time.Time) string {
	var b [3]byte
	rand.Read(b[:])
	return now.UTC().Format(snapshotTimeLayout) + "-" + hex.EncodeToString(b[:])
}

// SnapshotTime is when the snapshot with this id was started; ok is false for an id
// NewSnapshotID did not make.
func SnapshotTime(id string) (time.Time, bool) {
	if len(id) < len(snapshotTimeLayout) {
		return time.Time{}, false
	}
	t, err := time.Parse(snapshotTimeLayout, id[:len(snapshotTimeLayout)])
	return t, err == nil
}

// ValidSnapshotID reports whether id can name a snapshot: 1 to 128 ASCII letters,
// digits, dashes and underscores, so that batch/<id>/ is one clean path segment on
// any store or file system. Readers accept any such id, not only NewSnapshotID's.
func ValidSnapshotID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_' {
			return false
		}
	}
	return true
}

// SnapshotPrefix is the key prefix of a snapshot's files: batch/<id>/.
func SnapshotPrefix(id string) string { return BatchPrefix + id + "/" }

// ModelKey is where file of a snapshot's model goes: batch/<id>/<model>/<file>.
func ModelKey(id, model, file string) string { return SnapshotPrefix(id) + model + "/" + file }

// SnapshotManifestKey is the copy, inside the snapshot, of the manifest that
// publishes it: batch/<id>/manifest.json. Readers follow ManifestKey only.
func SnapshotManifestKey(id string) string { return SnapshotPrefix(id) + "manifest.json" }

// ParseSnapshotKey returns the snapshot id of a key under batch/.
func ParseSnapshotKey(key string) (id string, ok bool) {
	rest, found := strings.CutPrefix(key, BatchPrefix)
	if !found {
		return "", false
	}
	id, _, found = strings.Cut(rest, "/")
	if !found || id == "" {
		return "", false
	}
	return id, true
}

// ValidModelName reports whether name can be a snapshot's model (a dbt model name):
// lowercase letters, digits and underscores, starting with a letter, at most 128
// bytes.
func ValidModelName(name string) bool { return validIdent(name) }

// StateModel is the model of a snapshot that holds a speed dataset's state: the rows
// of the latest version of every resource, int_<dataset>__latest. The raw dataset's
// is int_resources__latest, with every tombstone; a view's holds no deleted resource.
func StateModel(dataset string) string { return "int_" + dataset + "__latest" }

// ParseStateModel returns the dataset whose state model is name.
func ParseStateModel(name string) (dataset string, ok bool) {
	rest, ok := strings.CutPrefix(name, "int_")
	if !ok {
		return "", false
	}
	dataset, ok = strings.CutSuffix(rest, "__latest")
	if !ok || dataset == "" {
		return "", false
	}
	return dataset, true
}
