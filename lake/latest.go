package lake

// LatestOrder ranks the versions of one resource (rows of the raw dataset with the
// same resource_type and id), newest first (docs/format/latest.md):
//
//  1. by versionId — numerically when it is a number, then as text — but only while
//     every version ranked carries one (the column Versioned says so, computed by
//     VersionedSQL over the versions ranked together);
//  2. then by lastUpdated, or for a change without one (a delete notification that
//     carries none) by when fhirlake stored it;
//  3. then by the order it arrived in: offset, partition and topic (the backfill's
//     line and file);
//  4. then by the ingest time.
//
// So a server that does not version its resources is ranked by lastUpdated, and a
// delete without a versionId outranks the versions it follows instead of ranking below
// every versioned one. Every reader that keeps "the latest version" of a resource ranks
// with this order, so that the query layer and the batch layer agree on it:
//
//	SELECT * EXCLUDE (versioned) FROM (SELECT *, <VersionedSQL> AS versioned FROM …)
//	QUALIFY row_number() OVER (PARTITION BY resource_type, id ORDER BY <LatestOrder>) = 1
//
// It is SQL over RawSchema's column names. The query layer ranks with it (query/
// catalog_sql.go). The dbt project restates it under its staging names in the macro
// fhir_latest_order (dbt/macros/latest.sql), used by int_resources__latest;
// TestLatestOrderMatchesDBT fails when the two differ. Changing the order means
// changing the macro too, which changes the dbt project's fingerprint
// (Manifest.Project): the next compaction of a tenant whose speed layer is complete is
// a full refresh.
const LatestOrder = `CASE WHEN versioned THEN TRY_CAST(version_id AS BIGINT) END DESC NULLS LAST,
	CASE WHEN versioned THEN version_id END DESC NULLS LAST,
	coalesce(last_updated, ingest_time) DESC, "offset" DESC, "partition" DESC, topic DESC, ingest_time DESC`

// Versioned is the column LatestOrder reads: whether every version ranked together
// with a row carries a versionId.
const Versioned = "versioned"

// VersionedSQL computes Versioned over the versions of each resource ranked together.
const VersionedSQL = "bool_and(version_id IS NOT NULL) OVER (PARTITION BY resource_type, id)"

// LatestSQL keeps the latest version of each resource of from, a relation with the raw
// dataset's ranking columns; tiebreak, if not empty, is appended to the order.
func LatestSQL(from, tiebreak string) string {
	order := LatestOrder
	if tiebreak != "" {
		order += ", " + tiebreak
	}
	return "SELECT * EXCLUDE (" + Versioned + ") FROM (SELECT *, " + VersionedSQL + " AS " + Versioned + " FROM " + from + ")\n" +
		"\t\t\t\tQUALIFY row_number() OVER (PARTITION BY resource_type, id ORDER BY " + order + ") = 1"
}
