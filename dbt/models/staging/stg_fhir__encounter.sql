-- Rows of the view `encounter` in this run's plan, renamed and cast.
{% set columns = {
    'status': 'varchar',
    'class_code': 'varchar',
    'class_system': 'varchar',
    'patient_id': 'varchar',
    'start': 'timestamptz',
    'end': 'timestamptz',
    'practitioner_id': 'varchar',
    'location_id': 'varchar',
    'service_provider_id': 'varchar',
    'discharge_disposition': 'varchar',
    'type_code': 'varchar',
    'type_system': 'varchar',
    'type_display': 'varchar',
    'reason_code': 'varchar',
    'reason_system': 'varchar',
    'reason_display': 'varchar',
} %}

with source as (
    {{ speed_source('encounter', columns) }}
)

select
    {{ stg_view_lineage() }},
    status,
    class_code,
    class_system,
    patient_id,
    "start" as period_start,
    "end" as period_end,
    practitioner_id,
    location_id,
    service_provider_id,
    discharge_disposition,
    type_code,
    type_system,
    type_display,
    reason_code,
    reason_system,
    reason_display
    {{ stg_view_rest('encounter', columns) }}
from source
