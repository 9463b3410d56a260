-- One row per current immunization.
select
    resource_id as immunization_id,
    version_id,
    last_updated,
    status,
    patient_id,
    encounter_id,
    occurred_at,
    primary_source,
    location_id,
    vaccine_code,
    {{ normalize_code_system('vaccine_system') }} as vaccine_system,
    {{ code_system_name('vaccine_system') }} as vaccine_system_name,
    vaccine_display
from {{ fhir_state('immunization') }}
