-- The previous snapshot's state of int_observation__latest, in the columns of
-- stg_fhir__observation. No previous snapshot: no rows.
{{ snapshot_source('int_observation__latest', ref('stg_fhir__observation')) }}
