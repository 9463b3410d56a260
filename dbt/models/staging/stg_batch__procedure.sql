-- The previous snapshot's state of int_procedure__latest, in the columns of
-- stg_fhir__procedure. No previous snapshot: no rows.
{{ snapshot_source('int_procedure__latest', ref('stg_fhir__procedure')) }}
