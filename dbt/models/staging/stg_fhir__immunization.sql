-- Rows of the view `immunization` in this run's plan, renamed and cast.
{% set columns = {
    'status': 'varchar',
    'patient_id': 'varchar',
    'encounter_id': 'varchar',
    'occurrence': 'timestamptz',
    'primary_source': 'boolean',
    'location_id': 'varchar',
    'vaccine_code': 'varchar',
    'vaccine_system': 'varchar',
    'vaccine_display': 'varchar',
} %}

with source as (
    {{ speed_source('immunization', columns) }}
)

select
    {{ stg_view_lineage() }},
    status,
    patient_id,
    encounter_id,
    occurrence as occurred_at,
    primary_source,
    location_id,
    vaccine_code,
    vaccine_system,
    vaccine_display
    {{ stg_view_rest('immunization', columns) }}
from source
