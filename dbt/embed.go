// Package dbt holds the batch layer's dbt project (dbt-core with dbt-duckdb): staging,
// intermediate and mart models over one tenant's speed layer and previous snapshot.
// The project is embedded so that `fhirlake compact` always runs the models it was
// built with; see compactor for how a run is planned, gated and published.
package dbt

import "embed"

// Project is the dbt project: dbt_project.yml, profiles.yml, models, macros, tests,
// and the dbt-duckdb plugin that gives DuckDB the tenant's S3 credentials.
//
//go:embed dbt_project.yml profiles.yml all:models all:macros all:tests plugins/*.py
var Project embed.FS
