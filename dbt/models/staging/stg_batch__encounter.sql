-- The previous snapshot's state of int_encounter__latest, in the columns of
-- stg_fhir__encounter. No previous snapshot: no rows.
{{ snapshot_source('int_encounter__latest', ref('stg_fhir__encounter')) }}
