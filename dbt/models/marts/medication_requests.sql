-- One row per current medication request.
select
    resource_id as medication_request_id,
    version_id,
    last_updated,
    status,
    intent,
    patient_id,
    encounter_id,
    authored_at,
    requester_id,
    medication_id,
    medication_code,
    {{ normalize_code_system('medication_system') }} as medication_system,
    {{ code_system_name('medication_system') }} as medication_system_name,
    coalesce(medication_display, medication_text) as medication_display,
    reason_condition_id,
    reason_code,
    {{ normalize_code_system('reason_system') }} as reason_system,
    reason_display,
    dosage_text,
    as_needed
from {{ fhir_state('medication_request') }}
