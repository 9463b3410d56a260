-- Rows of the view `medication_request` in this run's plan, renamed and cast.
{% set columns = {
    'status': 'varchar',
    'intent': 'varchar',
    'medication_id': 'varchar',
    'medication_text': 'varchar',
    'patient_id': 'varchar',
    'encounter_id': 'varchar',
    'authored_on': 'timestamptz',
    'requester_id': 'varchar',
    'reason_condition_id': 'varchar',
    'dosage_text': 'varchar',
    'as_needed': 'boolean',
    'medication_code': 'varchar',
    'medication_system': 'varchar',
    'medication_display': 'varchar',
    'reason_code': 'varchar',
    'reason_system': 'varchar',
    'reason_display': 'varchar',
} %}

with source as (
    {{ speed_source('medication_request', columns) }}
)

select
    {{ stg_view_lineage() }},
    status,
    intent,
    medication_id,
    medication_text,
    patient_id,
    encounter_id,
    authored_on as authored_at,
    requester_id,
    reason_condition_id,
    dosage_text,
    as_needed,
    medication_code,
    medication_system,
    medication_display,
    reason_code,
    reason_system,
    reason_display
    {{ stg_view_rest('medication_request', columns) }}
from source
