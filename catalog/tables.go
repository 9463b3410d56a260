package catalog

import (
	"errors"
	"fmt"
	"sort"

	"fhirlake/lake"
)

// The names of a tenant's tables (docs/format/iceberg.md): one namespace holds the
// change tables of `fhirlake register`, one per speed dataset under the dataset's name,
// and the batch tables of `fhirlake compact`, each state model int_<dataset>__latest as
// <dataset>_latest and each mart under its own name. The rule is defined here once;
// `fhirlake config validate`, `register` and `compact` refuse a configuration whose
// names meet, and the compactor a snapshot whose names do.

// StateTableSuffix ends the name of a dataset's batch table of latest versions.
const StateTableSuffix = "_latest"

// BatchTableName is the table a model of a batch snapshot is published as: a state
// model int_<dataset>__latest as <dataset>_latest (resources_latest, patient_latest),
// a mart under its own name.
func BatchTableName(model string) string {
	if ds, ok := lake.ParseStateModel(model); ok {
		return ds + StateTableSuffix
	}
	return model
}

// TableNames are the tables of a tenant's namespace for its speed datasets (the raw
// dataset and every view dataset; the compactor keeps state for each) and the marts of
// its dbt project: the change table and the state table of every dataset, and a table
// per mart. Two that would bear one name are an error naming both, and what to rename;
// every clash is reported.
func TableNames(datasets, marts []string) error {
	// owner is who claims a table; view or mart is what a user renames to resolve a
	// clash: a custom view (views_dir) or a mart of the project (compact.project_dir).
	type owner struct{ what, view, mart string }
	owners := map[string]owner{}
	var errs []error
	claim := func(table string, o owner) {
		prev, ok := owners[table]
		if !ok {
			owners[table] = o
			return
		}
		fix := "the mart " + o.mart + " (compact.project_dir)"
		switch {
		case prev.view != "":
			fix = "the view " + prev.view + " (views_dir)"
		case o.view != "":
			fix = "the view " + o.view + " (views_dir)"
		}
		errs = append(errs, fmt.Errorf("iceberg table %s would be both %s and %s: rename %s", table, prev.what, o.what, fix))
	}
	datasets = sortedUnique(datasets)
	marts = sortedUnique(marts)
	for _, ds := range datasets {
		o := owner{what: "the change table of dataset " + ds}
		if ds != lake.RawDataset {
			o.view = ds
		}
		claim(ds, o)
	}
	for _, ds := range datasets {
		claim(ds+StateTableSuffix, owner{what: "the state table of dataset " + ds})
	}
	for _, m := range marts {
		claim(BatchTableName(m), owner{what: "the table of mart " + m, mart: m})
	}
	return errors.Join(errs...)
}

func sortedUnique(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	n := 0
	for i, v := range out {
		if i == 0 || v != out[n-1] {
			out[n] = v
			n++
		}
	}
	return out[:n]
}
