-- One row per current condition.
select
    resource_id as condition_id,
    version_id,
    last_updated,
    clinical_status,
    verification_status,
    category,
    patient_id,
    encounter_id,
    onset_at,
    abatement_at,
    recorded_at,
    code,
    {{ normalize_code_system('code_system') }} as code_system,
    {{ code_system_name('code_system') }} as code_system_name,
    code_display
from {{ fhir_state('condition') }}
