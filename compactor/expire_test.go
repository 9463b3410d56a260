package compactor

import (
	"strings"
	"testing"
	"time"

	"fhirlake/lake"
	"fhirlake/sink"
)

func TestExpired(t *testing.T) {
	const (
		current = "20261125T020000Z-cccccc"
		prev1   = "20261124T020000Z-bbbbbb"
		prev2   = "20261123T020000Z-aaaaaa"
		prev3   = "20261122T020000Z-999999"
		orphan  = "20261125T010000Z-dddddd" // a run that died during its upload
		running = "20261125T025500Z-eeeeee" // a run in progress
	)
	m := &lake.Manifest{
		SnapshotID: current,
		Watermark:  lake.Watermark{Modified: mustTime("2026-11-25T01:59:00Z")},
		History:    []string{prev1, prev2, prev3},
		// State of the raw dataset and of the view patient; none of organization.
		Models: map[string]lake.Model{lake.StateModel("resources"): {}, lake.StateModel("patient"): {}},
	}
	listing := []sink.Object{
		{Key: speedKey("resources", "2026-11-17", "old"), Modified: mustTime("2026-11-17T23:00:00Z")},
		{Key: speedKey("patient", "2026-11-18", "edge"), Modified: mustTime("2026-11-18T01:59:00Z")},
		{Key: speedKey("patient", "2026-11-17", "old"), Modified: mustTime("2026-11-17T23:00:00Z")},
		// Its rows live nowhere else: never expired.
		{Key: speedKey("organization", "2026-11-17", "old"), Modified: mustTime("2026-11-17T23:00:00Z")},
		{Key: speedKey("resources", "2026-11-25", "new"), Modified: mustTime("2026-11-25T01:00:00Z")},
		{Key: "speed/resources/date=2026-11-17/.put-1", Modified: mustTime("2026-11-17T23:00:00Z")},
		{Key: "batch/" + current + "/patients/data_0.parquet"},
		{Key: "batch/" + current + "/manifest.json"},
		{Key: "batch/" + prev1 + "/patients/data_0.parquet"},
		{Key: "batch/" + prev2 + "/patients/data_0.parquet"},
		{Key: "batch/" + prev3 + "/patients/data_0.parquet"},
		{Key: "batch/" + orphan + "/patients/data_0.parquet"},
		{Key: "batch/" + running + "/patients/data_0.parquet"},
		{Key: "batch/handmade/patients/data_0.parquet"},
		{Key: lake.ManifestKey},
	}
	now := mustTime("2026-11-25T03:00:00Z")
	tests := []struct {
		name string
		o    ExpireOptions
		want []string
	}{
		{
			name: "defaults",
			o:    ExpireOptions{SpeedRetention: 7 * 24 * time.Hour, KeepSnapshots: 3, OrphanGrace: time.Hour},
			want: []string{
				"batch/" + prev3 + "/patients/data_0.parquet",
				"batch/" + orphan + "/patients/data_0.parquet",
				speedKey("resources", "2026-11-17", "old"),
				speedKey("patient", "2026-11-17", "old"),
			},
		},
		{
			name: "speed kept forever, one snapshot",
			o:    ExpireOptions{KeepSnapshots: 1, OrphanGrace: 6 * time.Hour},
			want: []string{
				"batch/" + prev3 + "/patients/data_0.parquet",
				"batch/" + prev2 + "/patients/data_0.parquet",
				"batch/" + prev1 + "/patients/data_0.parquet",
			},
		},
		{
			name: "no grace for orphans",
			o:    ExpireOptions{KeepSnapshots: 4},
			want: []string{
				"batch/" + orphan + "/patients/data_0.parquet",
				"batch/" + running + "/patients/data_0.parquet",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Expired(listing, m, nil, now, tt.o)
			want := append([]string(nil), tt.want...)
			sortStrings(want)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
			for _, k := range got {
				if strings.HasPrefix(k, "batch/"+current+"/") || k == lake.ManifestKey {
					t.Errorf("expired %s of the current snapshot", k)
				}
			}
		})
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// TestExpiredKeepsReferencedBases: a state model's base lives under the snapshot that
// wrote it, carried by reference by the snapshots after it; expiry keeps it while the
// current manifest or a kept one references it, and deletes the rest of that snapshot.
func TestExpiredKeepsReferencedBases(t *testing.T) {
	const (
		current = "20261125T020000Z-cccccc"
		prev1   = "20261124T020000Z-bbbbbb"
		prev2   = "20261123T020000Z-aaaaaa" // wrote the base the current one carries
		prev3   = "20261122T020000Z-999999" // wrote the base prev1 carries
	)
	raw := lake.StateModel("resources")
	state := func(id, baseOf string) lake.Model {
		return lake.Model{
			Files:   []string{lake.ModelKey(baseOf, raw, "data_0.parquet")},
			Changed: &lake.Part{Files: []string{lake.ModelKey(id, raw, "changed_0.parquet")}},
			Delta:   &lake.Part{Files: []string{lake.ModelKey(id, raw, "delta_0.parquet")}},
		}
	}
	m := &lake.Manifest{SnapshotID: current, History: []string{prev1, prev2, prev3}, Models: map[string]lake.Model{raw: state(current, prev2)}}
	kept := []*lake.Manifest{{SnapshotID: prev1, Models: map[string]lake.Model{raw: state(prev1, prev3)}}}
	var listing []sink.Object
	for _, id := range []string{current, prev1, prev2, prev3} {
		for _, f := range []string{"data_0.parquet", "changed_0.parquet", "delta_0.parquet"} {
			listing = append(listing, sink.Object{Key: lake.ModelKey(id, raw, f)})
		}
		listing = append(listing, sink.Object{Key: lake.ModelKey(id, "patients", "data_0.parquet")})
	}
	o := ExpireOptions{KeepSnapshots: 2}
	if got := KeptSnapshots(m, o); len(got) != 1 || got[0] != prev1 {
		t.Fatalf("KeptSnapshots: got %v, want [%s]", got, prev1)
	}
	got := Expired(listing, m, kept, mustTime("2026-11-25T03:00:00Z"), o)
	want := []string{
		lake.ModelKey(prev2, raw, "changed_0.parquet"),
		lake.ModelKey(prev2, raw, "delta_0.parquet"),
		lake.ModelKey(prev2, "patients", "data_0.parquet"),
		lake.ModelKey(prev3, raw, "changed_0.parquet"),
		lake.ModelKey(prev3, raw, "delta_0.parquet"),
		lake.ModelKey(prev3, "patients", "data_0.parquet"),
	}
	sortStrings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
