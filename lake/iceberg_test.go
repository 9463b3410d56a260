package lake

import (
	"strings"
	"testing"
)

const pointerRoot = "s3://fhirlake-acme/lake"

func validPointer() string {
	return `{"snapshot_id": "20260101T000000Z-abcdef", "tables": {
		"int_resources__latest": {"table": "resources_latest", "snapshot_id": 7,
			"metadata_location": "s3://fhirlake-acme/lake/_iceberg/acme/resources_latest/metadata/00002-1f0c.metadata.json"},
		"patients": {"table": "patients", "snapshot_id": 9,
			"metadata_location": "s3://fhirlake-acme/lake/_iceberg/acme/patients/metadata/00001-2a.metadata.json"}}}`
}

func TestDecodeIcebergPointer(t *testing.T) {
	p, err := DecodeIcebergPointer([]byte(validPointer()), pointerRoot)
	if err != nil {
		t.Fatal(err)
	}
	if p.SnapshotID != "20260101T000000Z-abcdef" || p.Tables["patients"].SnapshotID != 9 ||
		p.Tables["int_resources__latest"].Table != "resources_latest" {
		t.Fatalf("decoded %+v", p)
	}
	b, err := p.Encode(pointerRoot)
	if err != nil {
		t.Fatal(err)
	}
	q, err := DecodeIcebergPointer(b, pointerRoot)
	if err != nil || q.Tables["patients"] != p.Tables["patients"] {
		t.Fatalf("round trip: %+v, %v", q, err)
	}
}

// A pointer is the tenant's to write: a location outside its lake, or not a
// metadata file, is refused with a message naming it.
func TestDecodeIcebergPointerRefuses(t *testing.T) {
	loc := "s3://fhirlake-acme/lake/_iceberg/acme/patients/metadata/00001-2a.metadata.json"
	for name, c := range map[string]struct{ from, to, want string }{
		"other bucket":        {loc, "s3://fhirlake-globex/lake/_iceberg/acme/patients/metadata/00001-2a.metadata.json", "outside the lake"},
		"bucket name prefix":  {loc, "s3://fhirlake-acme-evil/lake/_iceberg/metadata/1.metadata.json", "outside the lake"},
		"sibling prefix":      {loc, "s3://fhirlake-acme/lake2/_iceberg/metadata/1.metadata.json", "outside the lake"},
		"dot dot":             {loc, "s3://fhirlake-acme/lake/../other/metadata/1.metadata.json", "not a table's metadata file"},
		"glob":                {loc, "s3://fhirlake-acme/lake/_iceberg/*/metadata/1.metadata.json", "not a table's metadata file"},
		"quote":               {loc, "s3://fhirlake-acme/lake/_iceberg/x'/metadata/1.metadata.json", "not a table's metadata file"},
		"not metadata":        {loc, "s3://fhirlake-acme/lake/speed/resources/date=2026-01-01/a.parquet", "not a table's metadata file"},
		"no metadata dir":     {loc, "s3://fhirlake-acme/lake/_iceberg/x.metadata.json", "not a table's metadata file"},
		"local path":          {loc, "/etc/metadata/passwd.metadata.json", "outside the lake"},
		"invalid snapshot":    {"20260101T000000Z-abcdef", "../x", "invalid snapshot_id"},
		"invalid model":       {`"patients": {`, `"Patients;": {`, "invalid model name"},
		"invalid table":       {`"table": "patients"`, `"table": "p.x"`, "invalid table name"},
		"no tables":           {validPointer(), `{"snapshot_id": "s1", "tables": {}}`, "no tables"},
		"not json":            {validPointer(), `{"snapshot_id": `, "read _manifest/iceberg.json"},
		"snapshot id as text": {`"snapshot_id": 9`, `"snapshot_id": "9"`, "cannot unmarshal"},
	} {
		t.Run(name, func(t *testing.T) {
			b := strings.Replace(validPointer(), c.from, c.to, 1)
			if b == validPointer() {
				t.Fatalf("case changes nothing")
			}
			_, err := DecodeIcebergPointer([]byte(b), pointerRoot)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
	if _, err := DecodeIcebergPointer([]byte(validPointer()), pointerRoot+"/"); err == nil {
		t.Fatal("a root with a trailing slash was accepted")
	}
}

// FuzzDecodeIcebergPointer: whatever the object holds, a pointer accepted names
// only metadata files under the root.
func FuzzDecodeIcebergPointer(f *testing.F) {
	f.Add([]byte(validPointer()))
	f.Add([]byte(strings.ReplaceAll(validPointer(), "fhirlake-acme/lake", "fhirlake-acme/lake/..")))
	f.Add([]byte(`{"snapshot_id":"a","tables":{"m":{"table":"t","metadata_location":"s3://fhirlake-acme/lake/metadata/a.metadata.json"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeIcebergPointer(b, pointerRoot)
		if err != nil {
			return
		}
		for _, tb := range p.Tables {
			key, ok := strings.CutPrefix(tb.MetadataLocation, pointerRoot+"/")
			if !ok || !CleanKey(key) || strings.ContainsAny(key, "'\\*?[{%") {
				t.Fatalf("accepted %q", tb.MetadataLocation)
			}
		}
	})
}
