package lake

// LatestOrder ranks the versions of one resource (rows of the raw dataset with the
// same resource_type and id), newest first: by versionId, numerically when it is a
// number, then as text; then lastUpdated; then the Kafka coordinates offset,
// partition and topic; then the ingest time. Nulls rank last. Every reader that
// keeps "the latest version" of a resource ranks with this order, so that the query
// layer and the batch layer agree on it, tombstones included (docs/format/latest.md).
//
// It is SQL over RawSchema's column names, for the ORDER BY of
// row_number() OVER (PARTITION BY resource_type, id ORDER BY …). The query layer
// ranks with it (latestOrder in query/catalog_lake.go). The dbt project mirrors it under
// its staging names:
//
//   - dbt/models/intermediate/int_resources__latest.sql ranks the batch layer's
//     versions with the same keys (TestLatestOrderMatchesDBT fails when the two
//     differ);
//   - dbt/models/staging/stg_fhir__resources.sql computes version_number, the
//     numeric versionId the order starts with;
//   - dbt/tests/assert_no_older_version_wins.sql checks its first keys;
//   - dbt/macros/latest.sql keeps a view's rows of the latest version, matched on
//     Kafka coordinates.
//
// Changing the order means changing those files too, which changes the dbt
// project's fingerprint (Manifest.Project): the next compaction of a tenant whose
// speed layer is complete is a full refresh.
const LatestOrder = `TRY_CAST(version_id AS BIGINT) DESC NULLS LAST, version_id DESC NULLS LAST,
	last_updated DESC NULLS LAST, "offset" DESC, "partition" DESC, topic DESC, ingest_time DESC`
