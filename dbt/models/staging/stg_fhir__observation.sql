-- Rows of the view `observation` in this run's plan, renamed and cast.
{% set columns = {
    'status': 'varchar',
    'category': 'varchar',
    'patient_id': 'varchar',
    'encounter_id': 'varchar',
    'effective': 'timestamptz',
    'issued': 'timestamptz',
    'value_quantity': 'double',
    'value_unit': 'varchar',
    'value_unit_code': 'varchar',
    'value_string': 'varchar',
    'value_boolean': 'boolean',
    'value_integer': 'bigint',
    'value_date_time': 'timestamptz',
    'component_count': 'integer',
    'code': 'varchar',
    'code_system': 'varchar',
    'code_display': 'varchar',
    'value_code': 'varchar',
    'value_system': 'varchar',
    'value_display': 'varchar',
} %}

with source as (
    {{ speed_source('observation', columns) }}
)

select
    {{ stg_view_lineage() }},
    status,
    category,
    patient_id,
    encounter_id,
    effective as effective_at,
    issued as issued_at,
    value_quantity,
    value_unit,
    value_unit_code,
    value_string,
    value_boolean,
    value_integer,
    value_date_time,
    component_count,
    code,
    code_system,
    code_display,
    value_code,
    value_system,
    value_display
    {{ stg_view_rest('observation', columns) }}
from source
