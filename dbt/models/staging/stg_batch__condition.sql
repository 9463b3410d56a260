-- The previous snapshot's state of int_condition__latest, in the columns of
-- stg_fhir__condition. No previous snapshot: no rows.
{{ snapshot_source('int_condition__latest', ref('stg_fhir__condition')) }}
