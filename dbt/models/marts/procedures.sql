-- One row per current procedure.
select
    resource_id as procedure_id,
    version_id,
    last_updated,
    status,
    patient_id,
    encounter_id,
    performed_start_at,
    performed_end_at,
    location_id,
    reason_condition_id,
    code,
    {{ normalize_code_system('code_system') }} as code_system,
    {{ code_system_name('code_system') }} as code_system_name,
    code_display,
    reason_code,
    {{ normalize_code_system('reason_system') }} as reason_system,
    reason_display
from {{ fhir_state('procedure') }}
