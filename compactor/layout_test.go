package compactor

import "testing"

func TestParseSpeedKey(t *testing.T) {
	tests := []struct {
		key                 string
		ok                  bool
		dataset, date, name string
	}{
		{"speed/resources/date=2026-11-25/fhir.notifications-3-0-784.parquet", true, "resources", "2026-11-25", "fhir.notifications-3-0-784.parquet"},
		{"speed/observation_component/date=2025-01-06/t-0-1-2.parquet", true, "observation_component", "2025-01-06", "t-0-1-2.parquet"},
		{"speed/resources/date=2026-13-01/x.parquet", false, "", "", ""},
		{"speed/resources/2026-11-25/x.parquet", false, "", "", ""},
		{"speed/resources/date=2026-11-25/.put-123", false, "", "", ""},
		{"speed/resources/date=2026-11-25/x.json", false, "", "", ""},
		{"speed/Resources/date=2026-11-25/x.parquet", false, "", "", ""},
		{"speed/resources/date=2026-11-25/sub/x.parquet", false, "", "", ""},
		{"batch/20261125T000000Z-abc/patients/data_0.parquet", false, "", "", ""},
		{"_manifest/batch.json", false, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			f, ok := ParseSpeedKey(tt.key)
			if ok != tt.ok {
				t.Fatalf("ok: got %v, want %v", ok, tt.ok)
			}
			if ok && (f.Dataset != tt.dataset || f.Date != tt.date || f.Name != tt.name || f.Key != tt.key) {
				t.Errorf("got %+v, want dataset %s date %s name %s", f, tt.dataset, tt.date, tt.name)
			}
		})
	}
}

func TestSnapshotIDs(t *testing.T) {
	at := mustTime("2026-11-25T02:00:03Z")
	id := newSnapshotID(at)
	if got, ok := snapshotTime(id); !ok || !got.Equal(at) {
		t.Errorf("snapshotTime(%s): got %v %v, want %v", id, got, ok, at)
	}
	if !validSnapshotID(id) {
		t.Errorf("%s is not a valid id", id)
	}
	if other := newSnapshotID(at); other == id {
		t.Errorf("two runs in the same second got the same id %s", id)
	}
	if _, ok := snapshotTime("adhoc"); ok {
		t.Error("an id this package did not make has a time")
	}
	if got, ok := snapshotOf("batch/" + id + "/patients/data_0.parquet"); !ok || got != id {
		t.Errorf("snapshotOf: got %q %v", got, ok)
	}
}
