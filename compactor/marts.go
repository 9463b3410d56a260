package compactor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"fhirlake/lake"
)

// Resource marts merged on read (docs/format/snapshot.md). A mart with one row per
// resource (observations, patients, …) is published as the state models are: a
// rebuild writes it whole, as its base; an incremental run writes only the mart rows
// of the resources changed since the base (the delta, the mart's own SQL over the
// state models' deltas: a mart reads them through the macro fhir_state) and their
// ids (the changed keys), and carries the base by reference. The aggregate marts
// (patient_latest_vitals, encounter_summary) are rebuilt whole from the merged marts.

// resourceMart is a mart of one row per resource of one type, keyed by its id.
type resourceMart struct {
	name, key, resourceType string
}

// resourceMarts are the built-in project's marts merged on read.
var resourceMarts = []resourceMart{
	{"allergies", "allergy_id", "AllergyIntolerance"},
	{"conditions", "condition_id", "Condition"},
	{"encounters", "encounter_id", "Encounter"},
	{"immunizations", "immunization_id", "Immunization"},
	{"medication_requests", "medication_request_id", "MedicationRequest"},
	{"observations", "observation_id", "Observation"},
	{"patients", "patient_id", "Patient"},
	{"procedures", "procedure_id", "Procedure"},
}

// martPart is the dbt model of a resource mart's delta ("delta") or changed keys
// ("changed") in an incremental run.
func martPart(mart, part string) string { return mart + "__" + part }

// parseMartPart returns the resource mart and part ("delta", "changed") of an
// exported model name.
func parseMartPart(name string) (resourceMart, string, bool) {
	for _, m := range resourceMarts {
		if part, ok := strings.CutPrefix(name, m.name+"__"); ok && (part == "delta" || part == "changed") {
			return m, part, true
		}
	}
	return resourceMart{}, "", false
}

// writeMartModels generates, into project, the models of the resource marts of an
// incremental run: each one's delta (a copy of the mart, which reads the state
// models' deltas as it is named <mart>__delta: macro fhir_state) and changed keys
// (int_state__changed's ids of its type), enabled only when var state_mode is
// incremental; and, in an incremental run, the mart itself replaced by a view of its
// base without the changed keys and its delta (macro fhir_merged_mart).
func writeMartModels(project string, incremental bool) error {
	dir := filepath.Join(project, "models", "state", "generated")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	const enabled = "{{ config(enabled=var('state_mode', 'rebuild') == 'incremental') }}\n"
	for _, m := range resourceMarts {
		path := filepath.Join(project, "models", "marts", m.name+".sql")
		sql, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		files := map[string]string{
			martPart(m.name, "delta"): enabled + fmt.Sprintf("-- Generated: the rows of the mart %s of the resources changed since the base.\n", m.name) + string(sql),
			martPart(m.name, "changed"): enabled + fmt.Sprintf("-- Generated: the ids of the resources of the mart %s changed since the base.\n", m.name) +
				fmt.Sprintf("select resource_id as %s\nfrom {{ ref('%s') }}\nwhere resource_type = '%s'\norder by 1\n", m.key, changedModel, m.resourceType),
		}
		for name, body := range files {
			if err := os.WriteFile(filepath.Join(dir, name+".sql"), []byte(body), 0o644); err != nil {
				return err
			}
		}
		if incremental {
			merged := fmt.Sprintf("{{ config(materialized='view') }}\n-- Generated for an incremental run: the mart merged on read.\n{{ fhir_merged_mart('%s', '%s') }}\n", m.name, m.key)
			if err := os.WriteFile(path, []byte(merged), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// martModel is the manifest's model of a resource mart in an incremental run: the
// base of prev carried, the delta and changed keys exported by this run.
func martModel(id string, m resourceMart, models map[string]exportedModel, prev *lake.Manifest) lake.Model {
	var mod lake.Model
	if prev != nil {
		base := prev.Models[m.name]
		mod.Rows, mod.Bytes, mod.Files = base.Rows, base.Bytes, base.Files
	}
	delta, changed := models[martPart(m.name, "delta")], models[martPart(m.name, "changed")]
	mod.Delta = &lake.Part{Rows: delta.rows, Bytes: delta.bytes, Files: []string{lake.ModelKey(id, m.name, "delta_0.parquet")}}
	mod.Changed = &lake.Part{Rows: changed.rows, Bytes: changed.bytes, Files: []string{lake.ModelKey(id, m.name, "changed_0.parquet")}}
	mod.Key = []string{m.key}
	return mod
}
