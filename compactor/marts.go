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
// (patient_latest_vitals, encounter_summary: one row per patient, per encounter) merge
// on read too, keyed by their grain: their changed keys are the grain keys a change
// since the base can affect (aggregateMart.affected), their delta the mart's own SQL
// over the merged marts restricted to those keys (macro fhir_mart).

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

// aggregateMart is a mart of one row per key of its grain (a patient, an encounter),
// computed from the resource marts. A row is a function of the resource marts' rows
// that the keys of affected lead to, so that a run recomputes the rows of those keys
// alone.
type aggregateMart struct {
	name, key string
	// affected are the sources of the grain keys whose rows a change since the base
	// can affect; they must be complete, or the merged mart keeps stale base rows.
	affected []keySource
}

// keySource is column `column` (a grain key) of the rows of the resource mart `mart`
// whose column named as the key of the resource mart `of` holds the key of a resource
// of `of` changed since the base, in the base (their old versions, deleted ones included) and in the delta (their
// current versions).
type keySource struct{ mart, column, of string }

// aggregateMarts are the built-in project's aggregate marts merged on read.
var aggregateMarts = []aggregateMart{
	{"patient_latest_vitals", "patient_id", []keySource{
		{"patients", "patient_id", "patients"},
		{"observations", "patient_id", "observations"},
	}},
	{"encounter_summary", "encounter_id", []keySource{
		{"encounters", "encounter_id", "encounters"},
		{"observations", "encounter_id", "observations"},
		{"conditions", "encounter_id", "conditions"},
		{"medication_requests", "encounter_id", "medication_requests"},
		{"procedures", "encounter_id", "procedures"},
		// gender and birth date of the patient are denormalised into the encounter
		{"encounters", "encounter_id", "patients"},
	}},
}

// mergedMarts are the resource and aggregate marts merged on read.
func mergedMarts() []resourceMart {
	out := append([]resourceMart(nil), resourceMarts...)
	for _, a := range aggregateMarts {
		out = append(out, resourceMart{name: a.name, key: a.key})
	}
	return out
}

// resourceMartNamed is the resource mart name.
func resourceMartNamed(name string) (resourceMart, bool) {
	for _, m := range resourceMarts {
		if m.name == name {
			return m, true
		}
	}
	return resourceMart{}, false
}

// affectedKeysSQL is the dbt model of an aggregate mart's changed keys: every grain
// key of its sources, old and new.
func affectedKeysSQL(a aggregateMart) (string, error) {
	var parts []string
	for _, s := range a.affected {
		m, ok1 := resourceMartNamed(s.mart)
		of, ok2 := resourceMartNamed(s.of)
		if !ok1 || !ok2 {
			return "", fmt.Errorf("aggregate mart %s: %s or %s is no resource mart", a.name, s.mart, s.of)
		}
		changed := fmt.Sprintf("{{ ref('%s') }}", martPart(of.name, "changed"))
		if m == of && s.column == m.key {
			// a resource's own key: its changed keys
			parts = append(parts, fmt.Sprintf("select c.%s as k from %s as c", m.key, changed))
			continue
		}
		parts = append(parts, fmt.Sprintf("select b.%s as k from {{ fhir_mart_base('%s') }} as b\nsemi join %s as c on c.%s = b.%s",
			s.column, m.name, changed, of.key, of.key))
		delta := fmt.Sprintf("select d.%s as k from {{ ref('%s') }} as d", s.column, martPart(m.name, "delta"))
		if m != of {
			delta += fmt.Sprintf("\nsemi join %s as c on c.%s = d.%s", changed, of.key, of.key)
		}
		parts = append(parts, delta)
	}
	return fmt.Sprintf("-- Generated: the keys of the rows of the mart %s that a change since the base can affect.\n"+
		"select distinct k as %s from (\n%s\n)\nwhere k is not null\norder by 1\n",
		a.name, a.key, strings.Join(parts, "\nunion all\n")), nil
}

// martPart is the dbt model of a resource mart's delta ("delta") or changed keys
// ("changed") in an incremental run.
func martPart(mart, part string) string { return mart + "__" + part }

// parseMartPart returns the resource mart and part ("delta", "changed") of an
// exported model name.
func parseMartPart(name string) (resourceMart, string, bool) {
	for _, m := range mergedMarts() {
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
	changed := map[string]string{}
	for _, m := range resourceMarts {
		changed[m.name] = fmt.Sprintf("-- Generated: the ids of the resources of the mart %s changed since the base.\n", m.name) +
			fmt.Sprintf("select resource_id as %s\nfrom {{ ref('%s') }}\nwhere resource_type = '%s'\norder by 1\n", m.key, changedModel, m.resourceType)
	}
	for _, a := range aggregateMarts {
		sql, err := affectedKeysSQL(a)
		if err != nil {
			return err
		}
		changed[a.name] = sql
	}
	for _, m := range mergedMarts() {
		path := filepath.Join(project, "models", "marts", m.name+".sql")
		sql, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		files := map[string]string{
			martPart(m.name, "delta"):   enabled + fmt.Sprintf("-- Generated: the rows of the mart %s of the keys changed since the base.\n", m.name) + string(sql),
			martPart(m.name, "changed"): enabled + changed[m.name],
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
