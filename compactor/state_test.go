package compactor

import (
	"strings"
	"testing"

	"fhirlake/lake"
)

// TestStateMode: a run writes a delta beside the previous base until the resources
// changed since pass compact.rebase_share of the base; then, and when a rebuild is
// asked for (an erasure), when another dbt project built the snapshot (its marts'
// bases are that project's), or there is nothing to build on, it writes a new base.
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			inc, why := stateMode(tc.prev, "p1", tc.rebuild, 0.1)
			if inc != tc.incremental || !strings.Contains(why, tc.why) {
				t.Errorf("got %v (%s), want %v (%s)", inc, why, tc.incremental, tc.why)
			}
		})
	}
}
