package query

import "fhirlake/lake"

// The batch snapshot keeps, per SQL-on-FHIR view, a state model
// int_<view>__latest: the rows of the latest version of every resource, as
// the dbt staging models name them (dbt/models/staging/stg_fhir__<view>.sql).
// A session shows those rows under the speed layer's names, so that a view
// has the same columns before and after a compaction.

// batchRawModel is the state model of the raw dataset.
var batchRawModel = lake.StateModel(lake.RawDataset)

// batchStateModel is the state model of a speed view dataset.
func batchStateModel(view string) string { return lake.StateModel(view) }

// batchRawColumns selects int_resources__latest as the raw dataset's columns.
const batchRawColumns = `tenant, resource_type, resource_id AS id, version_id, last_updated, operation,
	kafka_topic AS topic, kafka_partition AS "partition", kafka_offset AS "offset", ingest_time, resource`

// batchLineage maps the staging models' lineage columns (macro
// stg_view_lineage) to a view dataset's.
var batchLineage = map[string]string{
	"tenant":          lake.ViewColTenant,
	"resource_type":   lake.ViewColResourceType,
	"resource_id":     lake.ViewColResourceID,
	"version_id":      lake.ViewColVersionID,
	"last_updated":    lake.ViewColLastUpdated,
	"kafka_topic":     lake.ViewColTopic,
	"kafka_partition": lake.ViewColPartition,
	"kafka_offset":    lake.ViewColOffset,
	"ingest_time":     lake.ViewColIngestTime,
	"row_index":       lake.ViewColRow,
}

// lineageOrder is the order of the lineage columns in a view dataset.
var lineageOrder = lake.ViewLineageNames()

// batchDropped are staging columns with no speed counterpart.
var batchDropped = map[string]bool{"version_number": true}

// batchRenames maps, per view, a staging column renamed by dbt back to the
// view's column. TestBatchRenamesMatchDBT checks it against the staging
// models.
var batchRenames = map[string]map[string]string{
	"allergy_intolerance":   {"allergy_type": "type", "onset_at": "onset", "recorded_at": "recorded_date"},
	"encounter":             {"period_start": "start", "period_end": "end"},
	"condition":             {"onset_at": "onset", "abatement_at": "abatement", "recorded_at": "recorded_date"},
	"immunization":          {"occurred_at": "occurrence"},
	"medication_request":    {"authored_at": "authored_on"},
	"observation":           {"effective_at": "effective", "issued_at": "issued"},
	"observation_component": {"effective_at": "effective"},
	"procedure":             {"performed_start_at": "performed_start", "performed_end_at": "performed_end"},
}

// speedColumn is the view dataset's name of a batch state column, "" for a
// column to leave out.
func speedColumn(view, col string) string {
	if batchDropped[col] {
		return ""
	}
	if s, ok := batchLineage[col]; ok {
		return s
	}
	if s, ok := batchRenames[view][col]; ok {
		return s
	}
	return col
}
