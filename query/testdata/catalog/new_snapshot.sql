-- speed files 1, changed 0
-- views:
--   observation view Observation batch+speed
--   observation_all history Observation speed
--   patient view Patient batch+speed
--   patient_all history Patient batch+speed
--   patients mart  batch
--   resources resources  batch+speed
--   resources_all resources  batch+speed
--   resources_latest resources  batch+speed

CREATE SCHEMA IF NOT EXISTS lake;

CREATE OR REPLACE VIEW lake."batch_resources" AS SELECT tenant, resource_type, resource_id AS id, version_id, last_updated, operation,
	kafka_topic AS topic, kafka_partition AS "partition", kafka_offset AS "offset", ingest_time, resource FROM read_parquet(['$LAKE/batch/20260101T000000Z-gold02/int_resources__latest/data_0.parquet', '$LAKE/batch/20260101T000000Z-gold02/int_resources__latest/data_1.parquet'], union_by_name = true);

CREATE OR REPLACE VIEW "resources_all" AS SELECT * FROM lake.batch_resources;

CREATE OR REPLACE VIEW "resources_latest" AS SELECT * FROM lake.batch_resources;

CREATE OR REPLACE VIEW "resources" AS SELECT * FROM resources_latest WHERE operation <> 'delete';

CREATE OR REPLACE VIEW "observation_all" AS SELECT * EXCLUDE (date) FROM read_parquet('$LAKE/speed/observation/*/*.parquet', hive_partitioning = true, union_by_name = true);

CREATE OR REPLACE VIEW "observation" AS SELECT v.* FROM "observation_all" v
			SEMI JOIN (SELECT resource_type, id, version_id, topic, "partition", "offset" FROM resources_latest
			           WHERE operation = 'upsert' AND resource_type = 'Observation') l
			  ON l.resource_type = v._resource_type AND l.id = v._resource_id AND l.topic = v._topic
			 AND l."partition" = v._partition AND l."offset" = v._offset AND l.version_id IS NOT DISTINCT FROM v._version_id
			QUALIFY row_number() OVER (PARTITION BY v._resource_type, v._resource_id, v._row ORDER BY v._ingest_time DESC) = 1;

CREATE OR REPLACE VIEW lake."batch_patient" AS SELECT "tenant" AS "_tenant", "resource_type" AS "_resource_type", "resource_id" AS "_resource_id", "version_id" AS "_version_id", "last_updated" AS "_last_updated", "kafka_topic" AS "_topic", "kafka_partition" AS "_partition", "kafka_offset" AS "_offset", "ingest_time" AS "_ingest_time", "row_index" AS "_row", "active" AS "active", "gender" AS "gender", "birth_date" AS "birth_date", "deceased" AS "deceased", "deceased_date_time" AS "deceased_date_time", "family_name" AS "family_name", "given_names" AS "given_names", "name_prefix" AS "name_prefix", "marital_status" AS "marital_status", "race_code" AS "race_code", "race_display" AS "race_display", "race_text" AS "race_text", "ethnicity_code" AS "ethnicity_code", "ethnicity_display" AS "ethnicity_display", "ethnicity_text" AS "ethnicity_text", "birth_sex" AS "birth_sex", "language" AS "language", "address_city" AS "address_city", "address_state" AS "address_state", "address_postal_code" AS "address_postal_code", "address_country" AS "address_country", "managing_organization_id" AS "managing_organization_id" FROM read_parquet(['$LAKE/batch/20260101T000000Z-gold02/int_patient__latest/data_0.parquet', '$LAKE/batch/20260101T000000Z-gold02/int_patient__latest/data_1.parquet'], union_by_name = true);

CREATE OR REPLACE VIEW lake."fresh_patient" AS SELECT * FROM lake."batch_patient" WHERE false;

CREATE OR REPLACE VIEW "patient_all" AS SELECT * FROM lake."batch_patient" UNION ALL BY NAME SELECT * FROM lake."fresh_patient";

CREATE OR REPLACE VIEW "patient" AS SELECT * FROM lake."batch_patient" UNION ALL BY NAME SELECT * FROM lake."fresh_patient" WHERE false;

CREATE OR REPLACE VIEW "patients" AS SELECT * FROM read_parquet(['$LAKE/batch/20260101T000000Z-gold02/patients/data_0.parquet'], union_by_name = true);

DROP TABLE IF EXISTS lake."changed";

DROP VIEW IF EXISTS lake."changed__patient";

DROP TABLE IF EXISTS lake."delta_patient";

DROP VIEW IF EXISTS lake."delta_resources";

DROP TABLE IF EXISTS lake."drop_patient";

DROP TABLE IF EXISTS lake."drop_resources";

DROP VIEW IF EXISTS lake."fresh_resources";

DROP VIEW IF EXISTS lake."pos_patient";

DROP VIEW IF EXISTS lake."pos_resources";

DROP VIEW IF EXISTS lake."stale__patient";

DROP TABLE IF EXISTS lake."stale_resources";

DROP TABLE IF EXISTS lake."winners";

DROP VIEW IF EXISTS lake."winners__patient";
