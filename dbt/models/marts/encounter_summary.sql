-- One row per current encounter with what was recorded during it: observations
-- (vital signs, laboratory), diagnoses (conditions), medication orders and procedures,
-- and the patient's age at the start: the encounter list of a clinical dashboard.
with observation_counts as (
    select
        encounter_id,
        count(*) as observation_count,
        count(*) filter (where category = 'vital-signs') as vital_sign_count,
        count(*) filter (where category = 'laboratory') as laboratory_count
    from {{ fhir_mart('observations', 'encounter_id') }}
    where encounter_id is not null
    group by encounter_id
),

diagnoses as (
    select
        encounter_id,
        list(struct_pack(
            condition_id := condition_id,
            code := code,
            code_system_name := code_system_name,
            code_display := code_display,
            clinical_status := clinical_status,
            verification_status := verification_status
        ) order by condition_id) as diagnoses
    from {{ fhir_mart('conditions', 'encounter_id') }}
    where encounter_id is not null
    group by encounter_id
),

medication_counts as (
    select encounter_id, count(*) as medication_request_count
    from {{ fhir_mart('medication_requests', 'encounter_id') }}
    where encounter_id is not null
    group by encounter_id
),

procedure_counts as (
    select encounter_id, count(*) as procedure_count
    from {{ fhir_mart('procedures', 'encounter_id') }}
    where encounter_id is not null
    group by encounter_id
)

select
    e.encounter_id,
    e.patient_id,
    p.gender as patient_gender,
    date_diff('year', p.birth_date, cast(e.period_start as date)) as patient_age_at_start,
    e.status,
    e.class_code,
    e.type_code,
    e.type_system_name,
    e.type_display,
    e.period_start,
    e.period_end,
    e.length_of_stay_hours,
    coalesce(o.observation_count, 0) as observation_count,
    coalesce(o.vital_sign_count, 0) as vital_sign_count,
    coalesce(o.laboratory_count, 0) as laboratory_count,
    coalesce(len(d.diagnoses), 0) as diagnosis_count,
    coalesce(d.diagnoses, []) as diagnoses,
    coalesce(m.medication_request_count, 0) as medication_request_count,
    coalesce(pr.procedure_count, 0) as procedure_count
from {{ fhir_mart('encounters', 'encounter_id') }} as e
left join {{ fhir_mart('patients') }} as p on p.patient_id = e.patient_id
left join observation_counts as o on o.encounter_id = e.encounter_id
left join diagnoses as d on d.encounter_id = e.encounter_id
left join medication_counts as m on m.encounter_id = e.encounter_id
left join procedure_counts as pr on pr.encounter_id = e.encounter_id
