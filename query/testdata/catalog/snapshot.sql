-- speed files 0, changed 0
-- views:
--   patient view Patient batch+speed
--   patient_all history Patient batch+speed
--   patients mart  batch
--   resources resources  batch+speed
--   resources_all resources  batch+speed
--   resources_latest resources  batch+speed

CREATE SCHEMA IF NOT EXISTS lake;

CREATE OR REPLACE VIEW lake."batch_resources" AS SELECT tenant, resource_type, resource_id AS id, version_id, last_updated, operation,
	kafka_topic AS topic, kafka_partition AS "partition", kafka_offset AS "offset", ingest_time, resource FROM read_parquet(['$LAKE/batch/20260101T000000Z-gold01/int_resources__latest/data_0.parquet', '$LAKE/batch/20260101T000000Z-gold01/int_resources__latest/data_1.parquet'], union_by_name = true);

CREATE OR REPLACE VIEW "resources_all" AS SELECT * FROM lake.batch_resources;

CREATE OR REPLACE VIEW "resources_latest" AS SELECT * FROM lake.batch_resources;

CREATE OR REPLACE VIEW "resources" AS SELECT * FROM resources_latest WHERE operation <> 'delete';

CREATE OR REPLACE VIEW lake."batch_patient" AS SELECT "tenant" AS "_tenant", "resource_type" AS "_resource_type", "resource_id" AS "_resource_id", "version_id" AS "_version_id", "last_updated" AS "_last_updated", "kafka_topic" AS "_topic", "kafka_partition" AS "_partition", "kafka_offset" AS "_offset", "ingest_time" AS "_ingest_time", "row_index" AS "_row", "active" AS "active", "gender" AS "gender", "birth_date" AS "birth_date", "deceased" AS "deceased", "deceased_date_time" AS "deceased_date_time", "family_name" AS "family_name", "given_names" AS "given_names", "name_prefix" AS "name_prefix", "marital_status" AS "marital_status", "race_code" AS "race_code", "race_display" AS "race_display", "race_text" AS "race_text", "ethnicity_code" AS "ethnicity_code", "ethnicity_display" AS "ethnicity_display", "ethnicity_text" AS "ethnicity_text", "birth_sex" AS "birth_sex", "language" AS "language", "address_city" AS "address_city", "address_state" AS "address_state", "address_postal_code" AS "address_postal_code", "address_country" AS "address_country", "managing_organization_id" AS "managing_organization_id" FROM read_parquet(['$LAKE/batch/20260101T000000Z-gold01/int_patient__latest/data_0.parquet', '$LAKE/batch/20260101T000000Z-gold01/int_patient__latest/data_1.parquet'], union_by_name = true);

CREATE OR REPLACE VIEW lake."fresh_patient" AS SELECT * FROM lake."batch_patient" WHERE false;

CREATE OR REPLACE VIEW "patient_all" AS SELECT * FROM lake."batch_patient" UNION ALL BY NAME SELECT * FROM lake."fresh_patient";

CREATE OR REPLACE VIEW "patient" AS SELECT * FROM lake."batch_patient" UNION ALL BY NAME SELECT * FROM lake."fresh_patient" WHERE false;

CREATE OR REPLACE VIEW "patients" AS SELECT * FROM read_parquet(['$LAKE/batch/20260101T000000Z-gold01/patients/data_0.parquet'], union_by_name = true);
