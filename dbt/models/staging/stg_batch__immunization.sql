-- The previous snapshot's state of int_immunization__latest, in the columns of
-- stg_fhir__immunization. No previous snapshot: no rows.
{{ snapshot_source('int_immunization__latest', ref('stg_fhir__immunization')) }}
