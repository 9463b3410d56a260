-- One row per current patient with the most recent value of each vital sign (LOINC),
-- blood pressure from the panel's components: the "latest vitals" tile of a clinical
-- dashboard. Amended and corrected results count; preliminary and cancelled do not. A
-- value and its unit come from the same measurement. The components are unnested in
-- the select list (a lateral join costs DuckDB a delim join, as long again as the rest)
-- and each vital's value and unit are one arg_max.
{%- set vitals = [
    ('body_height', '8302-2'),
    ('body_weight', '29463-7'),
    ('bmi', '39156-5'),
    ('heart_rate', '8867-4'),
    ('respiratory_rate', '9279-1'),
    ('body_temperature', '8310-5'),
    ('oxygen_saturation', '59408-5'),
    ('systolic_bp', '8480-6'),
    ('diastolic_bp', '8462-4'),
] %}

with observation as (
    select *
    from {{ fhir_mart('observations', 'patient_id') }}
    where status in ('final', 'amended', 'corrected')
      and code_system_name = 'loinc'
      and patient_id is not null
),

measurements as (
    select patient_id, observation_id, code, effective_at, value_quantity, value_unit
    from observation
    where value_quantity is not null
    union all
    select patient_id, observation_id, c.code, effective_at, c.value_quantity, c.value_unit
    from (
        select patient_id, observation_id, effective_at, unnest(components) as c
        from observation
    )
    where c.value_quantity is not null and c.code_system_name = 'loinc'
),

latest as (
    select
        patient_id,
        {%- for name, code in vitals %}
        arg_max({'value': value_quantity, 'unit': value_unit}, (effective_at, observation_id))
            filter (where code = '{{ code }}') as {{ name }},
        max(effective_at) filter (where code = '{{ code }}') as {{ name }}_at,
        {%- endfor %}
        max(effective_at) as last_vitals_at
    from measurements
    where code in ({% for _, code in vitals %}'{{ code }}'{{ ", " if not loop.last }}{% endfor %})
    group by patient_id
)

select
    p.patient_id,
    p.gender,
    p.birth_date,
    {%- for name, _ in vitals %}
    l.{{ name }}.value as {{ name }},
    l.{{ name }}.unit as {{ name }}_unit,
    l.{{ name }}_at,
    {%- endfor %}
    l.last_vitals_at
from {{ fhir_mart('patients', 'patient_id') }} as p
left join latest as l on l.patient_id = p.patient_id
