-- speed files 0, changed 0
-- views:
--   resources resources  speed
--   resources_all resources  speed
--   resources_latest resources  speed

CREATE SCHEMA IF NOT EXISTS lake;

CREATE OR REPLACE VIEW "resources_all" AS SELECT * FROM (SELECT NULL::VARCHAR AS "tenant", NULL::VARCHAR AS "resource_type", NULL::VARCHAR AS "id", NULL::VARCHAR AS "version_id", NULL::TIMESTAMPTZ AS "last_updated", NULL::VARCHAR AS "operation", NULL::VARCHAR AS "topic", NULL::INTEGER AS "partition", NULL::BIGINT AS "offset", NULL::TIMESTAMPTZ AS "ingest_time", NULL::VARCHAR AS "resource") WHERE false;

CREATE OR REPLACE VIEW "resources_latest" AS SELECT * EXCLUDE (versioned) FROM (SELECT *, bool_and(version_id IS NOT NULL) OVER (PARTITION BY resource_type, id) AS versioned FROM resources_all)
				QUALIFY row_number() OVER (PARTITION BY resource_type, id ORDER BY CASE WHEN versioned THEN TRY_CAST(version_id AS BIGINT) END DESC NULLS LAST,
	CASE WHEN versioned THEN version_id END DESC NULLS LAST,
	coalesce(last_updated, ingest_time) DESC, "offset" DESC, "partition" DESC, topic DESC, ingest_time DESC) = 1;

CREATE OR REPLACE VIEW "resources" AS SELECT * FROM resources_latest WHERE operation <> 'delete';
