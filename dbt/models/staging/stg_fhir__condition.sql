-- Rows of the view `condition` in this run's plan, renamed and cast.
{% set columns = {
    'clinical_status': 'varchar',
    'verification_status': 'varchar',
    'category': 'varchar',
    'patient_id': 'varchar',
    'encounter_id': 'varchar',
    'onset': 'timestamptz',
    'abatement': 'timestamptz',
    'recorded_date': 'timestamptz',
    'code': 'varchar',
    'code_system': 'varchar',
    'code_display': 'varchar',
} %}

with source as (
    {{ speed_source('condition', columns) }}
)

select
    {{ stg_view_lineage() }},
    clinical_status,
    verification_status,
    category,
    patient_id,
    encounter_id,
    onset as onset_at,
    abatement as abatement_at,
    recorded_date as recorded_at,
    code,
    code_system,
    code_display
    {{ stg_view_rest('condition', columns) }}
from source
