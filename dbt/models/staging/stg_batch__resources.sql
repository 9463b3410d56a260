-- The previous snapshot's state of int_resources__latest, in the columns of
-- stg_fhir__resources. No previous snapshot: no rows.
{{ snapshot_source('int_resources__latest', ref('stg_fhir__resources'), only_like=true) }}
