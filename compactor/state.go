package compactor

import (
	"fmt"
	"strings"

	"fhirlake/lake"
)

// Merge-on-read state (docs/format/snapshot.md). A rebuild ranks the previous state
// whole with the new changes and publishes every state model as a new base; an
// incremental run ranks only the resources it changed and publishes their rows as
// each state model's delta and their keys as its changed keys, beside the base it
// carries by reference. The dbt side is dbt/macros/state.sql and the models
// writeDeltaModels generates.

// changedModel is the dbt model of an incremental run's changed keys, shared by
// every state model.
const changedModel = "int_state__changed"

// deltaModel is the dbt model of an incremental run's delta of a dataset's state.
func deltaModel(dataset string) string { return "int_" + dataset + "__delta" }

// stateMode decides whether a run of the dbt project project building on prev (nil:
// none) writes deltas (incremental) or new bases, and says why: there is no previous
// state, a rebuild is asked for, another project built prev (its marts' bases may
// differ from what this project would write), or the resources changed since the base
// passed share of it.
func stateMode(prev *lake.Manifest, project string, rebuild bool, share float64) (incremental bool, why string) {
	switch {
	case prev == nil:
		return false, "no previous state"
	case rebuild:
		return false, "a rebuild is asked for"
	case prev.Project != project:
		return false, "another dbt project built the previous snapshot"
	}
	raw, ok := prev.Models[lake.StateModel(lake.RawDataset)]
	if !ok {
		return false, "the previous snapshot has no " + lake.StateModel(lake.RawDataset)
	}
	var changed int64
	if raw.Changed != nil {
		changed = raw.Changed.Rows
		// An aggregate mart's rows of the keys no change affects are read from its
		// base, which must be as old as the resource marts': an incremental run before
		// aggregate marts merged on read wrote them whole.
		for _, a := range aggregateMarts {
			if mod, ok := prev.Models[a.name]; ok && mod.Changed == nil {
				return false, "the previous snapshot's " + a.name + " is not merged on read"
			}
		}
	}
	if float64(changed) > share*float64(raw.Rows) {
		return false, fmt.Sprintf("%d resources changed since the base of %d (compact.rebase_share %g)", changed, raw.Rows, share)
	}
	return true, fmt.Sprintf("%d resources changed since the base of %d", changed, raw.Rows)
}

// previousState is the dbt var previous_state: each state model and merged mart of
// prev, its parts' files as DuckDB reads them under the lake's root.
func previousState(root string, prev *lake.Manifest) map[string]any {
	urls := func(keys []string) []string {
		out := make([]string, len(keys))
		for i, k := range keys {
			out[i] = root + "/" + k
		}
		return out
	}
	state := map[string]any{}
	names := stateModels(prev)
	for _, m := range mergedMarts() {
		if _, ok := prev.Models[m.name]; ok {
			names = append(names, m.name)
		}
	}
	for _, name := range names {
		mod := prev.Models[name]
		state[name] = map[string][]string{
			"base":    urls(mod.Files),
			"changed": urls(mod.Changed.PartFiles()),
			"delta":   urls(mod.Delta.PartFiles()),
		}
	}
	return state
}

type upload struct{ key, path string }

// tableUploads are the files of a new snapshot id, from what dbt exported: a mart's
// table, and a state model's or resource mart's new base (a rebuild) or its delta and
// changed keys (an incremental run).
func tableUploads(id string, models map[string]exportedModel, incremental bool) []upload {
	var out []upload
	for _, name := range sortedKeys(models) {
		if m, part, ok := parseMartPart(name); ok {
			if incremental {
				out = append(out, upload{lake.ModelKey(id, m.name, part+"_0.parquet"), models[name].path})
			}
			continue
		}
		if ds, ok := parseDeltaModel(name); ok && incremental {
			state := lake.StateModel(ds)
			out = append(out, upload{lake.ModelKey(id, state, "delta_0.parquet"), models[name].path})
			if c, ok := models[changedModel]; ok {
				out = append(out, upload{lake.ModelKey(id, state, "changed_0.parquet"), c.path})
			}
			continue
		}
		if name == changedModel || !lake.ValidModelName(name) {
			continue
		}
		out = append(out, upload{lake.ModelKey(id, name, "data_0.parquet"), models[name].path})
	}
	return out
}

// publishedModels are the manifest's models for the files tableUploads uploads: an
// incremental run's state models and resource marts keep the base of prev.
func publishedModels(id string, models map[string]exportedModel, prev *lake.Manifest, incremental bool) map[string]lake.Model {
	out := map[string]lake.Model{}
	changed := models[changedModel]
	for _, name := range sortedKeys(models) {
		local := models[name]
		if m, part, ok := parseMartPart(name); ok {
			if incremental && part == "delta" {
				out[m.name] = martModel(id, m, models, prev)
			}
			continue
		}
		if ds, ok := parseDeltaModel(name); ok && incremental {
			state := lake.StateModel(ds)
			var mod lake.Model
			if prev != nil {
				base := prev.Models[state]
				mod.Rows, mod.Bytes, mod.Files = base.Rows, base.Bytes, base.Files
			}
			mod.Delta = &lake.Part{Rows: local.rows, Bytes: local.bytes, Files: []string{lake.ModelKey(id, state, "delta_0.parquet")}}
			mod.Changed = &lake.Part{Rows: changed.rows, Bytes: changed.bytes, Files: []string{lake.ModelKey(id, state, "changed_0.parquet")}}
			out[state] = mod
			continue
		}
		if name == changedModel || !lake.ValidModelName(name) {
			continue
		}
		out[name] = lake.Model{Rows: local.rows, Bytes: local.bytes, Files: []string{lake.ModelKey(id, name, "data_0.parquet")}}
	}
	return out
}

// parseDeltaModel returns the dataset whose delta model is name.
func parseDeltaModel(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "int_")
	if !ok {
		return "", false
	}
	ds, ok := strings.CutSuffix(rest, "__delta")
	return ds, ok && lake.ValidDataset(ds)
}
