package lake

// LatestOrder ranks the versions of one resource (rows of the raw dataset with the
// same resource_type and id), newest first: by versionId, numerically when it is a
// number, then as text; then lastUpdated; then the Kafka coordinates offset,
// partition and topic; then the ingest time. Nulls rank last. Every reader that
// keeps "the latest version" of a resource ranks with this order, so that the query
// layer and the batch layer agree on it, tombstones included (docs/format/latest.md).
//
// It is SQL over RawSchema's column names, for an ORDER BY of
// row_number() OVER (PARTITION BY resource_type, id ORDER BY …). Mirrored, under
// the dbt staging names, by:
//
//   - dbt/models/intermediate/int_resources__latest.sql (the batch layer's ranking;
//     TestLatestOrderMatchesDBT fails when the two differ);
//   - dbt/tests/assert_no_older_version_wins.sql (checks its first keys);
//   - dbt/models/staging/stg_fhir__resources.sql (version_number, the numeric
//     versionId the ranking starts with).
//
// The query layer (query/views.go) ranks with it directly.
const LatestOrder = `TRY_CAST(version_id AS BIGINT) DESC NULLS LAST, version_id DESC NULLS LAST,
	last_updated DESC NULLS LAST, "offset" DESC, "partition" DESC, topic DESC, ingest_time DESC`
