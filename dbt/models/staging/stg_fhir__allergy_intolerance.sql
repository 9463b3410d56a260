-- Rows of the view `allergy_intolerance` in this run's plan, renamed and cast.
{% set columns = {
    'clinical_status': 'varchar',
    'verification_status': 'varchar',
    'type': 'varchar',
    'category': 'varchar',
    'criticality': 'varchar',
    'patient_id': 'varchar',
    'encounter_id': 'varchar',
    'onset': 'timestamptz',
    'recorded_date': 'timestamptz',
    'code': 'varchar',
    'code_system': 'varchar',
    'code_display': 'varchar',
} %}

with source as (
    {{ speed_source('allergy_intolerance', columns) }}
)

select
    {{ stg_view_lineage() }},
    clinical_status,
    verification_status,
    "type" as allergy_type,
    category,
    criticality,
    patient_id,
    encounter_id,
    onset as onset_at,
    recorded_date as recorded_at,
    code,
    code_system,
    code_display
    {{ stg_view_rest('allergy_intolerance', columns) }}
from source
