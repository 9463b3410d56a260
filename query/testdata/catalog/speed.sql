-- speed files 10, changed 0
-- views:
--   device resource Device speed
--   observation view Observation speed
--   observation_all history Observation speed
--   patient view Patient speed
--   patient_all history Patient speed
--   resources resources  speed
--   resources_all resources  speed
--   resources_latest resources  speed

CREATE SCHEMA IF NOT EXISTS lake;

CREATE OR REPLACE VIEW "resources_all" AS SELECT * EXCLUDE (date) FROM read_parquet('$LAKE/speed/resources/*/*.parquet', hive_partitioning = true, union_by_name = true);

CREATE OR REPLACE VIEW "resources_latest" AS SELECT * EXCLUDE (versioned) FROM (SELECT *, bool_and(version_id IS NOT NULL) OVER (PARTITION BY resource_type, id) AS versioned FROM resources_all)
				QUALIFY row_number() OVER (PARTITION BY resource_type, id ORDER BY CASE WHEN versioned THEN TRY_CAST(version_id AS BIGINT) END DESC NULLS LAST,
	CASE WHEN versioned THEN version_id END DESC NULLS LAST,
	coalesce(last_updated, ingest_time) DESC, "offset" DESC, "partition" DESC, topic DESC, ingest_time DESC) = 1;

CREATE OR REPLACE VIEW "resources" AS SELECT * FROM resources_latest WHERE operation <> 'delete';

CREATE OR REPLACE VIEW "observation_all" AS SELECT * EXCLUDE (date) FROM read_parquet('$LAKE/speed/observation/*/*.parquet', hive_partitioning = true, union_by_name = true);

CREATE OR REPLACE VIEW "observation" AS SELECT v.* FROM "observation_all" v
			SEMI JOIN (SELECT resource_type, id, version_id, topic, "partition", "offset" FROM resources_latest
			           WHERE operation = 'upsert' AND resource_type = 'Observation') l
			  ON l.resource_type = v._resource_type AND l.id = v._resource_id AND l.topic = v._topic
			 AND l."partition" = v._partition AND l."offset" = v._offset AND l.version_id IS NOT DISTINCT FROM v._version_id
			QUALIFY row_number() OVER (PARTITION BY v._resource_type, v._resource_id, v._row ORDER BY v._ingest_time DESC) = 1;

CREATE OR REPLACE VIEW "patient_all" AS SELECT * EXCLUDE (date) FROM read_parquet('$LAKE/speed/patient/*/*.parquet', hive_partitioning = true, union_by_name = true);

CREATE OR REPLACE VIEW "patient" AS SELECT v.* FROM "patient_all" v
			SEMI JOIN (SELECT resource_type, id, version_id, topic, "partition", "offset" FROM resources_latest
			           WHERE operation = 'upsert' AND resource_type = 'Patient') l
			  ON l.resource_type = v._resource_type AND l.id = v._resource_id AND l.topic = v._topic
			 AND l."partition" = v._partition AND l."offset" = v._offset AND l.version_id IS NOT DISTINCT FROM v._version_id
			QUALIFY row_number() OVER (PARTITION BY v._resource_type, v._resource_id, v._row ORDER BY v._ingest_time DESC) = 1;

CREATE OR REPLACE VIEW "device" AS SELECT id, version_id, last_updated, resource::JSON AS resource,
			tenant, topic, "partition", "offset", ingest_time FROM resources WHERE resource_type = 'Device';
