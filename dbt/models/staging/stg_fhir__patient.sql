-- Rows of the view `patient` in this run's plan, renamed and cast.
{% set columns = {
    'active': 'boolean',
    'gender': 'varchar',
    'birth_date': 'date',
    'deceased': 'boolean',
    'deceased_date_time': 'timestamptz',
    'family_name': 'varchar',
    'given_names': 'varchar',
    'name_prefix': 'varchar',
    'marital_status': 'varchar',
    'race_code': 'varchar',
    'race_display': 'varchar',
    'race_text': 'varchar',
    'ethnicity_code': 'varchar',
    'ethnicity_display': 'varchar',
    'ethnicity_text': 'varchar',
    'birth_sex': 'varchar',
    'language': 'varchar',
    'address_city': 'varchar',
    'address_state': 'varchar',
    'address_postal_code': 'varchar',
    'address_country': 'varchar',
    'managing_organization_id': 'varchar',
} %}

with source as (
    {{ speed_source('patient', columns) }}
)

select
    {{ stg_view_lineage() }},
    active,
    gender,
    birth_date,
    deceased,
    deceased_date_time,
    family_name,
    given_names,
    name_prefix,
    marital_status,
    race_code,
    race_display,
    race_text,
    ethnicity_code,
    ethnicity_display,
    ethnicity_text,
    birth_sex,
    language,
    address_city,
    address_state,
    address_postal_code,
    address_country,
    managing_organization_id
    {{ stg_view_rest('patient', columns) }}
from source
