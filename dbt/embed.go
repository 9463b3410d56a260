// Package dbt holds the batch layer's dbt project (dbt-core with dbt-duckdb): staging,
// intermediate and mart models over one tenant's speed layer and previous snapshot.
// The project is embedded so that `fhirlake compact` always runs the models it was
// built with; see compactor for how a run is planned, gated and published.
package dbt

import "embed"

// Project is the dbt project: dbt_project.yml, profiles.yml, models, macros and tests.
//
//go:embed dbt_project.yml profiles.yml all:models all:macros all:tests
var Project embed.FS
