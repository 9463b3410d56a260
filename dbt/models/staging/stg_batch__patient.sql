-- The previous snapshot's state of int_patient__latest, in the columns of
-- stg_fhir__patient. No previous snapshot: no rows.
{{ snapshot_source('int_patient__latest', ref('stg_fhir__patient')) }}
