-- Rows of the view `procedure` in this run's plan, renamed and cast.
{% set columns = {
    'status': 'varchar',
    'patient_id': 'varchar',
    'encounter_id': 'varchar',
    'performed_start': 'timestamptz',
    'performed_end': 'timestamptz',
    'location_id': 'varchar',
    'reason_condition_id': 'varchar',
    'code': 'varchar',
    'code_system': 'varchar',
    'code_display': 'varchar',
    'reason_code': 'varchar',
    'reason_system': 'varchar',
    'reason_display': 'varchar',
} %}

with source as (
    {{ speed_source('procedure', columns) }}
)

select
    {{ stg_view_lineage() }},
    status,
    patient_id,
    encounter_id,
    performed_start as performed_start_at,
    performed_end as performed_end_at,
    location_id,
    reason_condition_id,
    code,
    code_system,
    code_display,
    reason_code,
    reason_system,
    reason_display
    {{ stg_view_rest('procedure', columns) }}
from source
