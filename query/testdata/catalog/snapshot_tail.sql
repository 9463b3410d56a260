-- speed files 8, changed 7
-- views:
--   device resource Device batch+speed
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

CREATE OR REPLACE VIEW "observation_all" AS SELECT * EXCLUDE (date) FROM read_parquet('$LAKE/speed/observation/*/*.parquet', hive_partitioning = true, union_by_name = true);

CREATE OR REPLACE VIEW "observation" AS SELECT v.* FROM "observation_all" v
			SEMI JOIN (SELECT resource_type, id, version_id, topic, "partition", "offset" FROM resources_latest
			           WHERE operation = 'upsert' AND resource_type = 'Observation') l
			  ON l.resource_type = v._resource_type AND l.id = v._resource_id AND l.topic = v._topic
			 AND l."partition" = v._partition AND l."offset" = v._offset AND l.version_id IS NOT DISTINCT FROM v._version_id
			QUALIFY row_number() OVER (PARTITION BY v._resource_type, v._resource_id, v._row ORDER BY v._ingest_time DESC) = 1;

CREATE OR REPLACE VIEW lake."changed__patient" AS SELECT * FROM lake.changed WHERE resource_type = 'Patient';

CREATE OR REPLACE VIEW lake."stale__patient" AS SELECT * FROM lake.stale_resources WHERE resource_type = 'Patient';

CREATE OR REPLACE VIEW lake."winners__patient" AS SELECT * FROM lake.winners WHERE resource_type = 'Patient';

CREATE OR REPLACE VIEW lake."batch_patient" AS SELECT "tenant" AS "_tenant", "resource_type" AS "_resource_type", "resource_id" AS "_resource_id", "version_id" AS "_version_id", "last_updated" AS "_last_updated", "kafka_topic" AS "_topic", "kafka_partition" AS "_partition", "kafka_offset" AS "_offset", "ingest_time" AS "_ingest_time", "row_index" AS "_row", "active" AS "active", "gender" AS "gender", "birth_date" AS "birth_date", "deceased" AS "deceased", "deceased_date_time" AS "deceased_date_time", "family_name" AS "family_name", "given_names" AS "given_names", "name_prefix" AS "name_prefix", "marital_status" AS "marital_status", "race_code" AS "race_code", "race_display" AS "race_display", "race_text" AS "race_text", "ethnicity_code" AS "ethnicity_code", "ethnicity_display" AS "ethnicity_display", "ethnicity_text" AS "ethnicity_text", "birth_sex" AS "birth_sex", "language" AS "language", "address_city" AS "address_city", "address_state" AS "address_state", "address_postal_code" AS "address_postal_code", "address_country" AS "address_country", "managing_organization_id" AS "managing_organization_id" FROM read_parquet(['$LAKE/batch/20260101T000000Z-merge1/int_patient__latest/data_0.parquet', '$LAKE/batch/20260101T000000Z-merge1/int_patient__latest/data_1.parquet'], union_by_name = true);

CREATE OR REPLACE VIEW lake."fresh_patient" AS SELECT * EXCLUDE (date) FROM read_parquet(['$LAKE/speed/patient/date=2026-01-01/t-0-10-14.parquet', '$LAKE/speed/patient/date=2026-01-01/t-0-11-11.parquet', '$LAKE/speed/patient/date=2026-01-01/t-0-2-14.parquet'], hive_partitioning = true, union_by_name = true);

CREATE OR REPLACE VIEW "patient_all" AS SELECT * FROM lake."batch_patient" UNION ALL BY NAME SELECT * FROM lake."fresh_patient";

CREATE OR REPLACE VIEW lake."pos_patient" AS SELECT "tenant" AS "_tenant", "resource_type" AS "_resource_type", "resource_id" AS "_resource_id", "version_id" AS "_version_id", "last_updated" AS "_last_updated", "kafka_topic" AS "_topic", "kafka_partition" AS "_partition", "kafka_offset" AS "_offset", "ingest_time" AS "_ingest_time", "row_index" AS "_row", "active" AS "active", "gender" AS "gender", "birth_date" AS "birth_date", "deceased" AS "deceased", "deceased_date_time" AS "deceased_date_time", "family_name" AS "family_name", "given_names" AS "given_names", "name_prefix" AS "name_prefix", "marital_status" AS "marital_status", "race_code" AS "race_code", "race_display" AS "race_display", "race_text" AS "race_text", "ethnicity_code" AS "ethnicity_code", "ethnicity_display" AS "ethnicity_display", "ethnicity_text" AS "ethnicity_text", "birth_sex" AS "birth_sex", "language" AS "language", "address_city" AS "address_city", "address_state" AS "address_state", "address_postal_code" AS "address_postal_code", "address_country" AS "address_country", "managing_organization_id" AS "managing_organization_id", file_row_number + (file_index::BIGINT << 40) AS __fhirlake_pos FROM read_parquet(['$LAKE/batch/20260101T000000Z-merge1/int_patient__latest/data_0.parquet', '$LAKE/batch/20260101T000000Z-merge1/int_patient__latest/data_1.parquet'], union_by_name = true);

CREATE OR REPLACE TABLE lake."delta_patient" AS SELECT f.* FROM lake."fresh_patient" f
			SEMI JOIN lake."winners__patient" w ON w.resource_type = f._resource_type AND w.id = f._resource_id AND w.operation = 'upsert'
			 AND w.topic = f._topic AND w."partition" = f._partition AND w."offset" = f._offset AND w.version_id IS NOT DISTINCT FROM f._version_id
			QUALIFY row_number() OVER (PARTITION BY f._resource_type, f._resource_id, f._row ORDER BY f._ingest_time DESC) = 1;

CREATE OR REPLACE TABLE lake."drop_patient" AS SELECT __fhirlake_pos FROM (
		SELECT c.__fhirlake_pos, w.id IS NOT NULL AND d._resource_id IS NULL AS latest,
		       row_number() OVER (PARTITION BY c._resource_type, c._resource_id, c._row ORDER BY w.id IS NOT NULL AND d._resource_id IS NULL DESC, c.__fhirlake_pos) AS n
		FROM (SELECT b.__fhirlake_pos, b._resource_type, b._resource_id, b._row, b._version_id, b._topic, b._partition, b._offset
		      FROM lake."pos_patient" b SEMI JOIN lake."changed__patient" k ON k.resource_type = b._resource_type AND k.id = b._resource_id) c
		LEFT JOIN lake."winners__patient" w ON w.resource_type = c._resource_type AND w.id = c._resource_id AND w.operation = 'upsert'
		 AND w.topic = c._topic AND w."partition" = c._partition AND w."offset" = c._offset AND w.version_id IS NOT DISTINCT FROM c._version_id
		LEFT JOIN lake."delta_patient" d ON d._resource_type = c._resource_type AND d._resource_id = c._resource_id AND d._row IS NOT DISTINCT FROM c._row)
		WHERE NOT (latest AND n = 1);

CREATE OR REPLACE VIEW "patient" AS SELECT b.* EXCLUDE (__fhirlake_pos) FROM lake."pos_patient" b ANTI JOIN lake."drop_patient" d ON d.__fhirlake_pos = b.__fhirlake_pos UNION ALL BY NAME SELECT * FROM lake."delta_patient";

CREATE OR REPLACE VIEW "device" AS SELECT id, version_id, last_updated, resource::JSON AS resource,
			tenant, topic, "partition", "offset", ingest_time FROM resources WHERE resource_type = 'Device';

CREATE OR REPLACE VIEW "patients" AS SELECT * FROM read_parquet(['$LAKE/batch/20260101T000000Z-merge1/patients/data_0.parquet'], union_by_name = true);
