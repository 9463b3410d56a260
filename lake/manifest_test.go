package lake

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

const snap = "20260101T000000Z-abcdef"

func validManifest() *Manifest {
	return &Manifest{
		Version: ManifestVersion, Tenant: "acme", SnapshotID: snap, Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Watermark: Watermark{Modified: time.Unix(100, 0).UTC(), Key: "speed/resources/date=2026-01-01/t-0-0-1.parquet"},
		Models: map[string]Model{
			"int_resources__latest": {Rows: 3, Bytes: 10, Files: []string{ModelKey(snap, "int_resources__latest", "data_0.parquet")}},
			"patients":              {Rows: 1, Bytes: 5, Files: []string{ModelKey(snap, "patients", "data_0.parquet")}},
		},
		DBT: RunInfo{Version: "1.12.0", ElapsedSeconds: 1.5, Models: 2, Tests: 4},
	}
}

// rename gives m another snapshot id, its files moved along.
func rename(m *Manifest, id string) {
	for name, mod := range m.Models {
		m.Models[name] = Model{Rows: mod.Rows, Bytes: mod.Bytes, Files: []string{ModelKey(id, name, "data_0.parquet")}}
	}
	m.SnapshotID = id
}

func TestManifestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(m *Manifest)
		// err is part of the error; "" for a valid manifest.
		err string
	}{
		{"valid", func(m *Manifest) {}, ""},
		{"an id NewSnapshotID did not make", func(m *Manifest) { rename(m, "adhoc_1") }, ""},
		{"a model without files", func(m *Manifest) { m.Models["empty"] = Model{} }, ""},
		{"no version", func(m *Manifest) { m.Version = 0 }, "version 0"},
		{"a newer version", func(m *Manifest) { m.Version = ManifestVersion + 1 }, fmt.Sprintf("version %d", ManifestVersion+1)},
		{"version 1, before state parts", func(m *Manifest) { m.Version = 1 }, ""},
		{"a state model's base carried from an earlier snapshot, its changed keys and delta", func(m *Manifest) {
			m.Models["int_resources__latest"] = Model{Files: []string{ModelKey("20251231T000000Z-000000", "int_resources__latest", "data_0.parquet")},
				Changed: &Part{Files: []string{ModelKey(snap, "int_resources__latest", "changed_0.parquet")}},
				Delta:   &Part{Files: []string{ModelKey(snap, "int_resources__latest", "delta_0.parquet")}}}
		}, ""},
		{"a state model's base of another model", func(m *Manifest) {
			m.Models["int_resources__latest"] = Model{Files: []string{ModelKey("20251231T000000Z-000000", "int_patient__latest", "data_0.parquet")}}
		}, "outside"},
		{"a delta of an earlier snapshot", func(m *Manifest) {
			m.Models["int_resources__latest"] = Model{Delta: &Part{Files: []string{ModelKey("20251231T000000Z-000000", "int_resources__latest", "delta_0.parquet")}}}
		}, "outside"},
		{"changed keys that climb out", func(m *Manifest) {
			m.Models["int_resources__latest"] = Model{Changed: &Part{Files: []string{ModelKey(snap, "int_resources__latest", "../../x.parquet")}}}
		}, "outside"},
		{"a mart with a delta and no key", func(m *Manifest) {
			m.Models["patients"] = Model{Delta: &Part{Files: []string{ModelKey(snap, "patients", "delta_0.parquet")}}}
		}, "names its key"},
		{"a mart merged on read, its base carried from an earlier snapshot", func(m *Manifest) {
			m.Models["patients"] = Model{Files: []string{ModelKey("20251231T000000Z-000000", "patients", "data_0.parquet")},
				Changed: &Part{Files: []string{ModelKey(snap, "patients", "changed_0.parquet")}},
				Delta:   &Part{Files: []string{ModelKey(snap, "patients", "delta_0.parquet")}}, Key: []string{"patient_id"}}
		}, ""},
		{"a mart's key that is no column name", func(m *Manifest) {
			m.Models["patients"] = Model{Delta: &Part{Files: []string{ModelKey(snap, "patients", "delta_0.parquet")}}, Key: []string{`a"b`}}
		}, "key column"},
		{"no snapshot id", func(m *Manifest) { rename(m, "") }, "snapshot id"},
		{"a snapshot id with a slash", func(m *Manifest) { rename(m, "a/b") }, "snapshot id"},
		{"a snapshot id of dots", func(m *Manifest) { rename(m, "..") }, "snapshot id"},
		{"a snapshot id too long", func(m *Manifest) { rename(m, strings.Repeat("a", 129)) }, "snapshot id"},
		{"no models", func(m *Manifest) { m.Models = nil }, "no models"},
		{"a model name with a dot", func(m *Manifest) { m.Models["../x"] = Model{} }, "model name"},
		{"a model name in capitals", func(m *Manifest) { m.Models["Patients"] = Model{} }, "model name"},
		{"a file of another snapshot", func(m *Manifest) {
			m.Models["patients"] = Model{Files: []string{ModelKey("other", "patients", "data_0.parquet")}}
		}, "outside"},
		{"a file of another model", func(m *Manifest) {
			m.Models["patients"] = Model{Files: []string{ModelKey(snap, "int_resources__latest", "data_0.parquet")}}
		}, "outside"},
		{"a file that climbs out", func(m *Manifest) {
			m.Models["patients"] = Model{Files: []string{ModelKey(snap, "patients", "../../../etc/x.parquet")}}
		}, "outside"},
		{"an absolute file", func(m *Manifest) {
			m.Models["patients"] = Model{Files: []string{"/" + ModelKey(snap, "patients", "data_0.parquet")}}
		}, "outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validManifest()
			tt.change(m)
			err := m.Validate()
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("got %v, want an error about %q", err, tt.err)
			}
			// Writers and readers apply the same check.
			b, encErr := m.Encode()
			if (encErr == nil) != (tt.err == "") {
				t.Errorf("Encode: got %v", encErr)
			}
			if b == nil {
				b, _ = json.Marshal(m)
			}
			if _, decErr := DecodeManifest(b); (decErr == nil) != (tt.err == "") {
				t.Errorf("DecodeManifest: got %v", decErr)
			}
		})
	}
}

func TestManifestRoundTrip(t *testing.T) {
	m := validManifest()
	m.Previous, m.History, m.SpeedExpiredBefore = "20251231T000000Z-aaaaaa", []string{"20251231T000000Z-aaaaaa"}, time.Unix(50, 0).UTC()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), "}\n") {
		t.Errorf("encoded manifest does not end in a newline: %q", b[len(b)-5:])
	}
	got, err := ReadManifest(fstest.MapFS{ManifestKey: {Data: b}})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(m)
	if gotJSON, _ := json.Marshal(got); string(gotJSON) != string(want) {
		t.Errorf("got\n%s\nwant\n%s", gotJSON, want)
	}
	files, err := got.Files("/lake/acme", "patients")
	if err != nil || len(files) != 1 || files[0] != filepath.FromSlash("/lake/acme/batch/"+snap+"/patients/data_0.parquet") {
		t.Errorf("Files: got %v %v", files, err)
	}
	if names := got.ModelNames(); strings.Join(names, ",") != "int_resources__latest,patients" {
		t.Errorf("ModelNames: got %v", names)
	}
	if got.Prefix() != "batch/"+snap+"/" {
		t.Errorf("Prefix: got %s", got.Prefix())
	}
}

// TestReadManifestFields: a manifest as version 1 stores it, with a field this
// build does not know, reads as is.
func TestReadManifestFields(t *testing.T) {
	const stored = `{
  "version": 1, "tenant": "acme", "snapshot_id": "20260101T000000Z-abcdef", "created": "2026-01-01T00:00:00Z",
  "watermark": {"modified": "1970-01-01T00:01:40Z", "key": "speed/resources/date=2026-01-01/t-0-0-1.parquet"},
  "full_refresh": true, "speed_files": 3, "project": "p1", "speed_expired_before": "1970-01-01T00:00:50Z",
  "models": {"int_resources__latest": {"rows": 3, "bytes": 10, "files": ["batch/20260101T000000Z-abcdef/int_resources__latest/data_0.parquet"]}},
  "dbt": {"version": "1.12.0", "elapsed_seconds": 1.5, "models": 2, "tests": 4},
  "added_later": {"x": 1}
}`
	m, err := DecodeManifest([]byte(stored))
	if err != nil {
		t.Fatal(err)
	}
	if m.SnapshotID != snap || !m.Watermark.Modified.Equal(time.Unix(100, 0)) || !m.FullRefresh || m.SpeedFiles != 3 || m.Project != "p1" ||
		!m.SpeedExpiredBefore.Equal(time.Unix(50, 0)) || m.Models["int_resources__latest"].Rows != 3 || m.DBT.ElapsedSeconds != 1.5 {
		t.Errorf("got %+v", m)
	}
}

func TestReadManifestMissing(t *testing.T) {
	m, err := ReadManifest(fstest.MapFS{})
	if m != nil || err != nil {
		t.Errorf("got %v %v, want nil, nil", m, err)
	}
	if _, err := ReadManifest(fstest.MapFS{ManifestKey: {Data: []byte("{")}}); err == nil {
		t.Error("a truncated manifest was read")
	}
}

func TestWatermarkAndTail(t *testing.T) {
	w := Watermark{Modified: time.Unix(100, 0), Key: "speed/resources/date=2026-01-01/t-0-5-9.parquet"}
	tests := []struct {
		modified int64
		key      string
		after    bool
	}{
		{101, "speed/resources/date=2026-01-01/a.parquet", true},
		{99, "speed/resources/date=2026-01-01/z.parquet", false},
		{100, "speed/resources/date=2026-01-01/t-0-5-9.parquet", false},
		{100, "speed/resources/date=2026-01-01/t-0-6-9.parquet", true},
		{100, "speed/resources/date=2026-01-01/t-0-4-9.parquet", false},
	}
	for _, tt := range tests {
		if got := w.Before(SpeedFile{Key: tt.key, Modified: time.Unix(tt.modified, 0)}); got != tt.after {
			t.Errorf("%d %s: got %v, want %v", tt.modified, tt.key, got, tt.after)
		}
	}
	m := &Manifest{Watermark: w}
	if got := m.TailStart(time.Minute); !got.Equal(time.Unix(40, 0)) {
		t.Errorf("TailStart: got %v", got)
	}
}

func TestSnapshotIDs(t *testing.T) {
	at := time.Date(2026, 11, 25, 2, 0, 3, 0, time.UTC)
	id := NewSnapshotID(at)
	if got, ok := SnapshotTime(id); !ok || !got.Equal(at) {
		t.Errorf("SnapshotTime(%s): got %v %v, want %v", id, got, ok, at)
	}
	if !ValidSnapshotID(id) {
		t.Errorf("%s is not a valid id", id)
	}
	if other := NewSnapshotID(at); other == id {
		t.Errorf("two runs in the same second got the same id %s", id)
	}
	if _, ok := SnapshotTime("adhoc"); ok {
		t.Error("an id NewSnapshotID did not make has a time")
	}
	for key, want := range map[string]string{
		ModelKey(id, "patients", "data_0.parquet"): id,
		SnapshotManifestKey(id):                    id,
		"batch/" + id:                              "",
		"batch//x":                                 "",
		"speed/" + id + "/x":                       "",
	} {
		if got, ok := ParseSnapshotKey(key); got != want || ok != (want != "") {
			t.Errorf("ParseSnapshotKey(%s): got %q %v, want %q", key, got, ok, want)
		}
	}
}

func TestStateModel(t *testing.T) {
	if got := StateModel(RawDataset); got != "int_resources__latest" {
		t.Errorf("StateModel: got %s", got)
	}
	for name, want := range map[string]string{
		"int_resources__latest": "resources", "int_observation_component__latest": "observation_component",
		"patients": "", "int__latest": "", "int_patient": "",
	} {
		if got, ok := ParseStateModel(name); got != want || ok != (want != "") {
			t.Errorf("ParseStateModel(%s): got %q %v, want %q", name, got, ok, want)
		}
	}
}
