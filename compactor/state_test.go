package compactor

import (
	"strings"
	"testing"

	"fhirlake/lake"
)

// TestStateMode: a run writes a delta beside the previous base until the resources
// changed since pass compact.rebase_share of the base; then, and when a rebuild is
// asked for (an erasure), when another dbt project built the snapshot (its marts'
// bases are that project's), when an incremental run wrote an aggregate mart whole
// (its rows are not those of the base), or there is nothing to build on, it writes a
// new base.
func TestStateMode(t *testing.T) {
	raw := lake.StateModel(lake.RawDataset)
	prev := func(base, changed int64) *lake.Manifest {
		mod := lake.Model{Rows: base}
		if changed >= 0 {
			mod.Changed = &lake.Part{Rows: changed}
		}
		return &lake.Manifest{Project: "p1", Models: map[string]lake.Model{raw: mod}}
	}
	for _, tc := range []struct {
		name        string
		prev        *lake.Manifest
		rebuild     bool
		incremental bool
		why         string
	}{
		{"no previous state", nil, false, false, "no previous state"},
		{"a base with nothing changed since", prev(1000, -1), false, true, "0 resources changed"},
		{"changes within the share", prev(1000, 100), false, true, "100 resources changed"},
		{"changes past the share", prev(1000, 101), false, false, "compact.rebase_share 0.1"},
		{"a rebuild asked for", prev(1000, 0), true, false, "a rebuild is asked for"},
		{"no state of the raw dataset", &lake.Manifest{Project: "p1", Models: map[string]lake.Model{"patients": {}}}, false, false, "has no " + raw},
		{"a snapshot of another project", &lake.Manifest{Project: "p0", Models: prev(1000, 0).Models}, false, false, "another dbt project"},
		// An incremental run wrote the aggregate marts whole before they merged on read.
		{"an aggregate mart written whole by an incremental run", &lake.Manifest{Project: "p1", Models: map[string]lake.Model{
			raw: prev(1000, 10).Models[raw], "encounter_summary": {Rows: 50},
		}}, false, false, "encounter_summary is not merged on read"},
		{"an aggregate mart of a rebuild", &lake.Manifest{Project: "p1", Models: map[string]lake.Model{
			raw: prev(1000, -1).Models[raw], "encounter_summary": {Rows: 50},
		}}, false, true, "0 resources changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inc, why := stateMode(tc.prev, "p1", tc.rebuild, 0.1)
			if inc != tc.incremental || !strings.Contains(why, tc.why) {
				t.Errorf("got %v (%s), want %v (%s)", inc, why, tc.incremental, tc.why)
			}
		})
	}
}

// TestPublishedMartParts: an incremental run publishes a resource mart as its delta
// and changed ids beside the base it carries from the previous snapshot, keyed by
// the mart's id, and an aggregate mart keyed by its grain; a rebuild publishes the mart it exported whole.
func TestPublishedMartParts(t *testing.T) {
	const id, prevID = "20260102T000000Z-000002", "20260101T000000Z-000001"
	prev := &lake.Manifest{Models: map[string]lake.Model{
		"observations": {Rows: 100, Files: []string{lake.ModelKey(prevID, "observations", "data_0.parquet")}},
	}}
	exp := map[string]exportedModel{
		changedModel:            {path: "changed", rows: 3},
		deltaModel("resources"): {path: "rdelta", rows: 3},
		"observations__delta":   {path: "odelta", rows: 2},
		"observations__changed": {path: "ochanged", rows: 2},
		"patient_latest_vitals": {path: "vitals", rows: 9},
	}
	got := publishedModels(id, exp, prev, true)["observations"]
	if !got.Merged() || got.Rows != 100 || strings.Join(got.Files, " ") != prev.Models["observations"].Files[0] ||
		got.Delta.Files[0] != lake.ModelKey(id, "observations", "delta_0.parquet") || got.Delta.Rows != 2 ||
		got.Changed.Files[0] != lake.ModelKey(id, "observations", "changed_0.parquet") || strings.Join(got.Key, ",") != "observation_id" {
		t.Errorf("incremental: observations %+v", got)
	}
	// An aggregate mart too, keyed by its grain.
	exp["encounter_summary__delta"] = exportedModel{path: "edelta", rows: 4}
	exp["encounter_summary__changed"] = exportedModel{path: "echanged", rows: 5}
	if got := publishedModels(id, exp, prev, true)["encounter_summary"]; !got.Merged() || got.Changed.Rows != 5 || got.Delta.Rows != 4 ||
		got.Delta.Files[0] != lake.ModelKey(id, "encounter_summary", "delta_0.parquet") || strings.Join(got.Key, ",") != "encounter_id" {
		t.Errorf("incremental: encounter_summary %+v", got)
	}
	var keys []string
	for _, u := range tableUploads(id, exp, true) {
		keys = append(keys, u.key+"<"+u.path)
	}
	for _, want := range []string{lake.ModelKey(id, "observations", "delta_0.parquet") + "<odelta", lake.ModelKey(id, "observations", "changed_0.parquet") + "<ochanged",
		lake.ModelKey(id, "encounter_summary", "changed_0.parquet") + "<echanged"} {
		if !strings.Contains(strings.Join(keys, " "), want) {
			t.Errorf("uploads %v: no %s", keys, want)
		}
	}
	exp["observations"] = exportedModel{path: "obs", rows: 101}
	delete(exp, "observations__delta")
	delete(exp, "observations__changed")
	delete(exp, "encounter_summary__delta")
	delete(exp, "encounter_summary__changed")
	if got := publishedModels(id, exp, prev, false)["observations"]; got.Merged() || got.Rows != 101 || got.Files[0] != lake.ModelKey(id, "observations", "data_0.parquet") {
		t.Errorf("rebuild: observations %+v", got)
	}
}
