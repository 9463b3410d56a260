-- speed files 8, changed 7
-- views made: device, resources, resources_all, resources_latest

CREATE SCHEMA IF NOT EXISTS lake;

CREATE OR REPLACE VIEW lake."batch_resources" AS SELECT tenant, resource_type, resource_id AS id, version_id, last_updated, operation,
	kafka_topic AS topic, kafka_partition AS "partition", kafka_offset AS "offset", ingest_time, resource FROM read_parquet(['$LAKE/batch/20260101T000000Z-merge1/int_resources__latest/data_0.parquet', '$LAKE/batch/20260101T000000Z-merge1/int_resources__latest/data_1.parquet'], union_by_name = true);

CREATE OR REPLACE VIEW lake."fresh_resources" AS SELECT * EXCLUDE (date) FROM read_parquet(['$LAKE/speed/resources/date=2026-01-01/t-0-10-14.parquet', '$LAKE/speed/resources/date=2026-01-01/t-0-11-11.parquet', '$LAKE/speed/resources/date=2026-01-01/t-0-2-14.parquet', '$LAKE/speed/resources/date=2026-01-01/t-0-40-41.parquet'], hive_partitioning = true, union_by_name = true);

CREATE OR REPLACE VIEW lake."pos_resources" AS SELECT tenant, resource_type, resource_id AS id, version_id, last_updated, operation,
	kafka_topic AS topic, kafka_partition AS "partition", kafka_offset AS "offset", ingest_time, resource, file_row_number + (file_index::BIGINT << 40) AS __fhirlake_pos FROM read_parquet(['$LAKE/batch/20260101T000000Z-merge1/int_resources__latest/data_0.parquet', '$LAKE/batch/20260101T000000Z-merge1/int_resources__latest/data_1.parquet'], union_by_name = true);

CREATE OR REPLACE TABLE lake."changed" AS SELECT DISTINCT resource_type, id FROM lake.fresh_resources;

CREATE OR REPLACE TABLE lake."stale_resources" AS SELECT b.__fhirlake_pos, resource_type, id, version_id, last_updated, operation, topic, "partition", "offset", ingest_time FROM lake.pos_resources b
				SEMI JOIN lake.changed k ON k.resource_type = b.resource_type AND k.id = b.id;

CREATE OR REPLACE TABLE lake."winners" AS SELECT resource_type, id, version_id, operation, topic, "partition", "offset", fresh FROM (
				SELECT * EXCLUDE (versioned) FROM (SELECT *, bool_and(version_id IS NOT NULL) OVER (PARTITION BY resource_type, id) AS versioned FROM (SELECT resource_type, id, version_id, last_updated, operation, topic, "partition", "offset", ingest_time, false AS fresh FROM lake.stale_resources
				UNION ALL BY NAME SELECT resource_type, id, version_id, last_updated, operation, topic, "partition", "offset", ingest_time, true AS fresh FROM lake.fresh_resources))
				QUALIFY row_number() OVER (PARTITION BY resource_type, id ORDER BY CASE WHEN versioned THEN TRY_CAST(version_id AS BIGINT) END DESC NULLS LAST,
	CASE WHEN versioned THEN version_id END DESC NULLS LAST,
	coalesce(last_updated, ingest_time) DESC, "offset" DESC, "partition" DESC, topic DESC, ingest_time DESC, fresh DESC) = 1);

CREATE OR REPLACE TABLE lake."drop_resources" AS SELECT __fhirlake_pos FROM (
				SELECT c.__fhirlake_pos, w.id IS NOT NULL AS latest,
				       row_number() OVER (PARTITION BY c.resource_type, c.id ORDER BY w.id IS NOT NULL DESC, c.__fhirlake_pos) AS n
				FROM lake.stale_resources c
				LEFT JOIN lake.winners w ON w.resource_type = c.resource_type AND w.id = c.id AND NOT w.fresh AND w.topic = c.topic
				 AND w."partition" = c."partition" AND w."offset" = c."offset" AND w.version_id IS NOT DISTINCT FROM c.version_id)
				WHERE NOT (latest AND n = 1);

CREATE OR REPLACE VIEW lake."delta_resources" AS SELECT f.* FROM lake.fresh_resources f
				SEMI JOIN lake.winners w ON w.fresh AND w.resource_type = f.resource_type AND w.id = f.id AND w.topic = f.topic
				 AND w."partition" = f."partition" AND w."offset" = f."offset" AND w.version_id IS NOT DISTINCT FROM f.version_id
				QUALIFY row_number() OVER (PARTITION BY f.resource_type, f.id ORDER BY f.ingest_time DESC) = 1;

CREATE OR REPLACE VIEW "resources_all" AS SELECT * FROM lake.batch_resources UNION ALL BY NAME SELECT * FROM lake.fresh_resources;

CREATE OR REPLACE VIEW "resources_latest" AS SELECT b.* EXCLUDE (__fhirlake_pos) FROM lake."pos_resources" b ANTI JOIN lake."drop_resources" d ON d.__fhirlake_pos = b.__fhirlake_pos UNION ALL BY NAME SELECT * FROM lake."delta_resources";

CREATE OR REPLACE VIEW "resources" AS SELECT * FROM resources_latest WHERE operation <> 'delete';

CREATE OR REPLACE VIEW "device" AS SELECT id, version_id, last_updated, resource::JSON AS resource,
			tenant, topic, "partition", "offset", ingest_time FROM resources WHERE resource_type = 'Device';
