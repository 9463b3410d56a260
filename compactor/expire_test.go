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
			got := Expired(listing, m, now, tt.o)
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
