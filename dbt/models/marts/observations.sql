-- One row per current observation, its components (blood pressure systolic and
-- diastolic, …) as an ordered list.
with observation as (
    select * from {{ fhir_state('observation') }}
),

components as (
    select
        resource_id,
        list(struct_pack(
            component_index := component_index,
            code := code,
            code_system := {{ normalize_code_system('code_system') }},
            code_system_name := {{ code_system_name('code_system') }},
            code_display := code_display,
            value_quantity := value_quantity,
            value_unit := value_unit,
            value_unit_code := value_unit_code,
            value_string := value_string,
            value_code := value_code,
            value_display := value_display
        ) order by component_index) as components
    from {{ fhir_state('observation_component') }}
    group by resource_id
)

select
    o.resource_id as observation_id,
    o.version_id,
    o.last_updated,
    o.status,
    o.category,
    o.patient_id,
    o.encounter_id,
    o.effective_at,
    o.issued_at,
    o.code,
    {{ normalize_code_system('o.code_system') }} as code_system,
    {{ code_system_name('o.code_system') }} as code_system_name,
    o.code_display,
    o.value_quantity,
    o.value_unit,
    o.value_unit_code,
    o.value_string,
    o.value_boolean,
    o.value_integer,
    o.value_date_time,
    o.value_code,
    {{ normalize_code_system('o.value_system') }} as value_system,
    o.value_display,
    coalesce(len(c.components), 0) as component_count,
    coalesce(c.components, []) as components
from observation as o
left join components as c on c.resource_id = o.resource_id
