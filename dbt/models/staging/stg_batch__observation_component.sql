-- The previous snapshot's state of int_observation_component__latest, in the columns of
-- stg_fhir__observation_component. No previous snapshot: no rows.
{{ snapshot_source('int_observation_component__latest', ref('stg_fhir__observation_component')) }}
