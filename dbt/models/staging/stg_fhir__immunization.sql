-- Rows of the view `immunization` in this run's plan, renamed and cast.
with source as (
    {{ speed_source('immunization', {
        'status': 'varchar',
        'patient_id': 'varchar',
        'encounter_id': 'varchar',
        'occurrence': 'timestamptz',
        'primary_source': 'boolean',
        'location_id': 'varchar',
        'vaccine_code': 'varchar',
        'vaccine_system': 'varchar',
        'vaccine_display': 'varchar',
    }) }}
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
from source
