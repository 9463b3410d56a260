-- One row per current allergy or intolerance.
select
    resource_id as allergy_id,
    version_id,
    last_updated,
    clinical_status,
    verification_status,
    allergy_type,
    category,
    criticality,
    patient_id,
    encounter_id,
    onset_at,
    recorded_at,
    code,
    {{ normalize_code_system('code_system') }} as code_system,
    {{ code_system_name('code_system') }} as code_system_name,
    code_display
from {{ fhir_state('allergy_intolerance') }}
