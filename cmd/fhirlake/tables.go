package main

import (
	"fmt"

	"fhirlake/catalog"
	"fhirlake/compactor"
	"fhirlake/config"
	"fhirlake/flatten"
	"fhirlake/lake"
)

// checkTableNames refuses, with a catalog configured, views and marts whose Iceberg
// tables would bear one name in a tenant's namespace (catalog.TableNames): the change
// tables of `fhirlake register`, one per dataset (the raw dataset and every view of
// views_dir or built in), and the batch tables of `fhirlake compact`, <dataset>_latest
// and one per mart of the dbt project (compact.project_dir or built in).
func checkTableNames(cfg config.Config) error {
	if !cfg.Iceberg.Enabled() {
		return nil
	}
	views, err := flatten.LoadViews(cfg.ViewsDir)
	if err != nil {
		return err
	}
	datasets := []string{lake.RawDataset}
	for _, v := range views {
		datasets = append(datasets, v.Name())
	}
	marts, err := compactor.MartNames(cfg.Compact.ProjectDir)
	if err != nil {
		return err
	}
	if err := catalog.TableNames(datasets, marts); err != nil {
		return fmt.Errorf("iceberg: %w", err)
	}
	return nil
}
