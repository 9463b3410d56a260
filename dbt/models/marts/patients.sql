-- One row per current patient.
select
    resource_id as patient_id,
    version_id,
    last_updated,
    resource ->> '$.gender' as gender,
    try_cast(resource ->> '$.birthDate' as date) as birth_date,
    {{ fhir_extension('resource', 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex', '$.valueCode') }} as birth_sex,
    resource ->> '$.address[0].state' as state
from {{ ref('int_resources__latest') }}
where resource_type = 'Patient' and operation <> 'delete'
