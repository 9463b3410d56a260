package compactor

import (
	"strings"
	"testing"
	"time"

	"fhirlake/lake"
	"fhirlake/sink"
)

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// obj is a listed object modified at "HH:MM:SS" on 2026-11-25 (UTC).
func obj(key, hms string) sink.Object {
	return sink.Object{Key: key, Size: 100, Modified: mustTime("2026-11-25T" + hms + "Z")}
}

func speedKey(dataset, date, name string) string {
	return "speed/" + dataset + "/date=" + date + "/" + name + ".parquet"
}

func TestPlan(t *testing.T) {
	const day = "2026-11-25"
	listing := []sink.Object{
		obj(speedKey("resources", "2026-11-24", "t-0-0-99"), "00:30:00"),
		obj(speedKey("patient", "2026-11-24", "t-0-0-99"), "00:30:01"),
		obj(speedKey("resources", day, "t-0-100-199"), "01:10:00"),
		obj(speedKey("observation", day, "t-0-100-199"), "01:10:02"),
		obj(speedKey("resources", day, "t-1-0-50"), "01:50:00"),
		obj(speedKey("resources", day, "t-0-200-299"), "02:00:00"),
		obj(speedKey("resources", day, "t-1-51-80"), "02:00:00"),
		obj(speedKey("resources", day, "t-0-300-310"), "02:59:30"), // younger than the consistency delay at 03:00
		obj("speed/resources/date="+day+"/.put-0001", "02:10:00"),
		obj("batch/20261125T010000Z-aaaaaa/patients/data_0.parquet", "01:00:10"),
		obj("_manifest/batch.json", "01:00:11"),
	}
	now := mustTime(day + "T03:00:00Z")
	opts := PlanOptions{Overlap: 25 * time.Minute, ConsistencyDelay: time.Minute, Project: "p1"}
	prev := &lake.Manifest{
		Version: lake.ManifestVersion, SnapshotID: "20261125T010000Z-aaaaaa", Project: "p1",
		Watermark: lake.Watermark{Modified: mustTime(day + "T01:55:00Z"), Key: speedKey("resources", day, "t-0-100-199")},
	}
	tests := []struct {
		name     string
		prev     *lake.Manifest
		opts     func(PlanOptions) PlanOptions
		files    []string
		full     string // reason of a full refresh; "" for an incremental run
		upToDate bool
		fresh    int
		deferred int
		mark     string // key of the new watermark
		parts    string // dataset=date,… of the selected files
		datasets string
	}{
		{
			name: "first run reads every settled file", prev: nil,
			files: []string{
				speedKey("observation", day, "t-0-100-199"), speedKey("patient", "2026-11-24", "t-0-0-99"),
				speedKey("resources", "2026-11-24", "t-0-0-99"), speedKey("resources", day, "t-0-100-199"),
				speedKey("resources", day, "t-0-200-299"), speedKey("resources", day, "t-1-0-50"), speedKey("resources", day, "t-1-51-80"),
			},
			full: "no snapshot yet", fresh: 7, deferred: 1, mark: speedKey("resources", day, "t-1-51-80"),
			parts: "observation=2026-11-25 patient=2026-11-24 resources=2026-11-24,2026-11-25", datasets: "observation,patient,resources",
		},
		{
			name: "incremental reads from the watermark minus the overlap", prev: prev,
			files: []string{
				speedKey("resources", day, "t-0-200-299"), speedKey("resources", day, "t-1-0-50"), speedKey("resources", day, "t-1-51-80"),
			},
			// 01:50 is before the watermark but within the overlap: re-read, not fresh.
			fresh: 2, deferred: 1, mark: speedKey("resources", day, "t-1-51-80"), parts: "resources=2026-11-25", datasets: "resources",
		},
		{
			name: "a wider overlap re-reads more", prev: prev,
			opts: func(o PlanOptions) PlanOptions { o.Overlap = time.Hour; return o },
			files: []string{
				speedKey("observation", day, "t-0-100-199"), speedKey("resources", day, "t-0-100-199"),
				speedKey("resources", day, "t-0-200-299"), speedKey("resources", day, "t-1-0-50"), speedKey("resources", day, "t-1-51-80"),
			},
			fresh: 2, deferred: 1, mark: speedKey("resources", day, "t-1-51-80"), parts: "observation=2026-11-25 resources=2026-11-25", datasets: "observation,resources",
		},
		{
			name: "no consistency delay reads the youngest file too", prev: prev,
			opts: func(o PlanOptions) PlanOptions { o.ConsistencyDelay = 0; return o },
			files: []string{
				speedKey("resources", day, "t-0-200-299"), speedKey("resources", day, "t-0-300-310"),
				speedKey("resources", day, "t-1-0-50"), speedKey("resources", day, "t-1-51-80"),
			},
			fresh: 3, mark: speedKey("resources", day, "t-0-300-310"), parts: "resources=2026-11-25", datasets: "resources",
		},
		{
			name: "nothing newer than the watermark is up to date",
			prev: &lake.Manifest{Version: lake.ManifestVersion, SnapshotID: "s", Project: "p1",
				Watermark: lake.Watermark{Modified: mustTime(day + "T02:00:00Z"), Key: speedKey("resources", day, "t-1-51-80")}},
			files: []string{
				speedKey("resources", day, "t-0-200-299"), speedKey("resources", day, "t-1-0-50"), speedKey("resources", day, "t-1-51-80"),
			},
			upToDate: true, deferred: 1, mark: speedKey("resources", day, "t-1-51-80"), parts: "resources=2026-11-25", datasets: "resources",
		},
		{
			name: "same modification time, greater key is newer",
			prev: &lake.Manifest{Version: lake.ManifestVersion, SnapshotID: "s", Project: "p1",
				Watermark: lake.Watermark{Modified: mustTime(day + "T02:00:00Z"), Key: speedKey("resources", day, "t-0-200-299")}},
			files: []string{
				speedKey("resources", day, "t-0-200-299"), speedKey("resources", day, "t-1-0-50"), speedKey("resources", day, "t-1-51-80"),
			},
			fresh: 1, deferred: 1, mark: speedKey("resources", day, "t-1-51-80"), parts: "resources=2026-11-25", datasets: "resources",
		},
		{
			name: "full refresh on request", prev: prev,
			opts: func(o PlanOptions) PlanOptions { o.FullRefresh = true; return o },
			files: []string{
				speedKey("observation", day, "t-0-100-199"), speedKey("patient", "2026-11-24", "t-0-0-99"),
				speedKey("resources", "2026-11-24", "t-0-0-99"), speedKey("resources", day, "t-0-100-199"),
				speedKey("resources", day, "t-0-200-299"), speedKey("resources", day, "t-1-0-50"), speedKey("resources", day, "t-1-51-80"),
			},
			full: "full refresh requested", fresh: 7, deferred: 1, mark: speedKey("resources", day, "t-1-51-80"),
			parts: "observation=2026-11-25 patient=2026-11-24 resources=2026-11-24,2026-11-25", datasets: "observation,patient,resources",
		},
		{
			name: "a changed dbt project rebuilds", prev: prev,
			opts: func(o PlanOptions) PlanOptions { o.Project = "p2"; return o },
			files: []string{
				speedKey("observation", day, "t-0-100-199"), speedKey("patient", "2026-11-24", "t-0-0-99"),
				speedKey("resources", "2026-11-24", "t-0-0-99"), speedKey("resources", day, "t-0-100-199"),
				speedKey("resources", day, "t-0-200-299"), speedKey("resources", day, "t-1-0-50"), speedKey("resources", day, "t-1-51-80"),
			},
			full: "the dbt project changed", fresh: 7, deferred: 1, mark: speedKey("resources", day, "t-1-51-80"),
			parts: "observation=2026-11-25 patient=2026-11-24 resources=2026-11-24,2026-11-25", datasets: "observation,patient,resources",
		},
		{
			name: "a changed dbt project builds on the state once speed files were expired",
			prev: &lake.Manifest{Version: lake.ManifestVersion, SnapshotID: "20261125T010000Z-aaaaaa", Project: "p1",
				Watermark: prev.Watermark, SpeedExpiredBefore: mustTime("2026-11-18T01:55:00Z")},
			opts: func(o PlanOptions) PlanOptions { o.Project = "p2"; return o },
			files: []string{
				speedKey("resources", day, "t-0-200-299"), speedKey("resources", day, "t-1-0-50"), speedKey("resources", day, "t-1-51-80"),
			},
			fresh: 2, deferred: 1, mark: speedKey("resources", day, "t-1-51-80"), parts: "resources=2026-11-25", datasets: "resources",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := opts
			if tt.opts != nil {
				o = tt.opts(o)
			}
			sel := Plan(listing, tt.prev, now, o)
			var got []string
			for _, f := range sel.Files {
				got = append(got, f.Key)
			}
			if strings.Join(got, "\n") != strings.Join(tt.files, "\n") {
				t.Errorf("files:\ngot  %q\nwant %q", got, tt.files)
			}
			if sel.FullRefresh != (tt.full != "") || (sel.FullRefresh && sel.Reason != tt.full) {
				t.Errorf("full refresh: got %v %q, want %q", sel.FullRefresh, sel.Reason, tt.full)
			}
			if sel.FullRefresh && sel.Previous != nil {
				t.Error("a full refresh builds on a previous snapshot")
			}
			if !sel.FullRefresh && sel.Previous != tt.prev && tt.prev != nil {
				t.Error("an incremental run does not build on the previous snapshot")
			}
			if sel.UpToDate() != tt.upToDate {
				t.Errorf("up to date: got %v, want %v", sel.UpToDate(), tt.upToDate)
			}
			if sel.Fresh != tt.fresh || sel.Deferred != tt.deferred {
				t.Errorf("fresh, deferred: got %d %d, want %d %d", sel.Fresh, sel.Deferred, tt.fresh, tt.deferred)
			}
			if sel.Watermark.Key != tt.mark {
				t.Errorf("watermark: got %s, want %s", sel.Watermark.Key, tt.mark)
			}
			var parts []string
			for _, d := range sel.Datasets {
				parts = append(parts, d+"="+strings.Join(sel.Partitions[d], ","))
			}
			if strings.Join(parts, " ") != tt.parts || strings.Join(sel.Datasets, ",") != tt.datasets {
				t.Errorf("partitions, datasets: got %v %v, want %s %s", parts, sel.Datasets, tt.parts, tt.datasets)
			}
		})
	}
}

// TestPlanNeverLosesAFile replays a day of flushes with compactions in between, some
// uploads landing behind the watermark, and checks that every file is read by some
// run: the invariant the overlap exists for.
func TestPlanNeverLosesAFile(t *testing.T) {
	start := mustTime("2026-11-25T00:00:00Z")
	opts := PlanOptions{Overlap: 10 * time.Minute, ConsistencyDelay: time.Minute}
	var listing []sink.Object
	read := map[string]bool{}
	var prev *lake.Manifest
	for minute := 0; minute < 24*60; minute++ {
		now := start.Add(time.Duration(minute) * time.Minute)
		// A flush per minute; every seventh is a slow upload dated 8 minutes back.
		modified := now
		if minute%7 == 0 {
			modified = now.Add(-8 * time.Minute)
		}
		key := speedKey("resources", "2026-11-25", "t-0-"+time.Duration(minute).String())
		listing = append(listing, sink.Object{Key: key, Modified: modified})
		if minute%45 != 0 {
			continue
		}
		sel := Plan(listing, prev, now, opts)
		if sel.UpToDate() {
			continue
		}
		for _, f := range sel.Files {
			read[f.Key] = true
		}
		prev = &lake.Manifest{Version: lake.ManifestVersion, SnapshotID: "s", Watermark: sel.Watermark}
	}
	sel := Plan(listing, prev, start.Add(25*time.Hour), opts)
	for _, f := range sel.Files {
		read[f.Key] = true
	}
	for _, o := range listing {
		if !read[o.Key] {
			t.Errorf("%s (modified %s) was never read", o.Key, o.Modified.Format(time.TimeOnly))
		}
	}
}
