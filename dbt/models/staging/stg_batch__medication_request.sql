-- The previous snapshot's state of int_medication_request__latest, in the columns of
-- stg_fhir__medication_request. No previous snapshot: no rows.
{{ snapshot_source('int_medication_request__latest', ref('stg_fhir__medication_request')) }}
