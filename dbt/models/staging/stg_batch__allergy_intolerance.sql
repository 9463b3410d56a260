-- The previous snapshot's state of int_allergy_intolerance__latest, in the columns of
-- stg_fhir__allergy_intolerance. No previous snapshot: no rows.
{{ snapshot_source('int_allergy_intolerance__latest', ref('stg_fhir__allergy_intolerance')) }}
