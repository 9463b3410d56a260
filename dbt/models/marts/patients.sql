-- One row per current patient: demographics from the typed view, and the US Core
-- extensions read from the resource itself, every OMB race category included (the
-- view keeps only the first).
{%- set race = 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-race' %}
{%- set ethnicity = 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity' %}
{%- set birth_sex = 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex' %}

with patient as (
    select * from {{ fhir_state('patient') }}
),

resource as (
    select resource_id, resource
    from {{ fhir_state('resources') }}
    where resource_type = 'Patient' and not is_deleted
)

select
    p.resource_id as patient_id,
    p.version_id,
    p.last_updated,
    p.active,
    p.gender,
    p.birth_date,
    coalesce(p.deceased, false) as is_deceased,
    p.deceased_date_time as deceased_at,
    p.family_name,
    p.given_names,
    p.name_prefix,
    p.marital_status,
    coalesce(p.birth_sex, {{ fhir_extension_value('r.resource', birth_sex) }}) as birth_sex,
    {{ fhir_extension_values('r.resource', [race, 'ombCategory']) }} as race_codes,
    coalesce(p.race_code, {{ fhir_extension_value('r.resource', [race, 'ombCategory']) }}) as race_code,
    coalesce(p.race_display, {{ fhir_extension_value('r.resource', [race, 'ombCategory'], '$.valueCoding.display') }}) as race_display,
    coalesce(p.race_text, {{ fhir_extension_value('r.resource', [race, 'text']) }}) as race_text,
    coalesce(p.ethnicity_code, {{ fhir_extension_value('r.resource', [ethnicity, 'ombCategory']) }}) as ethnicity_code,
    coalesce(p.ethnicity_display, {{ fhir_extension_value('r.resource', [ethnicity, 'ombCategory'], '$.valueCoding.display') }}) as ethnicity_display,
    coalesce(p.ethnicity_text, {{ fhir_extension_value('r.resource', [ethnicity, 'text']) }}) as ethnicity_text,
    p.language,
    p.address_city,
    p.address_state,
    p.address_postal_code,
    p.address_country,
    p.managing_organization_id
from patient as p
left join resource as r on r.resource_id = p.resource_id
