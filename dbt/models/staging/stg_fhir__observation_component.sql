-- Rows of the view `observation_component` in this run's plan (one per component),
-- renamed and cast.
{% set columns = {
    'patient_id': 'varchar',
    'encounter_id': 'varchar',
    'effective': 'timestamptz',
    'observation_code': 'varchar',
    'component_index': 'integer',
    'value_quantity': 'double',
    'value_unit': 'varchar',
    'value_unit_code': 'varchar',
    'value_string': 'varchar',
    'value_boolean': 'boolean',
    'value_integer': 'bigint',
    'value_date_time': 'timestamptz',
    'code': 'varchar',
    'code_system': 'varchar',
    'code_display': 'varchar',
    'value_code': 'varchar',
    'value_system': 'varchar',
    'value_display': 'varchar',
} %}

with source as (
    {{ speed_source('observation_component', columns) }}
)

select
    {{ stg_view_lineage() }},
    patient_id,
    encounter_id,
    effective as effective_at,
    observation_code,
    component_index,
    value_quantity,
    value_unit,
    value_unit_code,
    value_string,
    value_boolean,
    value_integer,
    value_date_time,
    code,
    code_system,
    code_display,
    value_code,
    value_system,
    value_display
    {{ stg_view_rest('observation_component', columns) }}
from source
