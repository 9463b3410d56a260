{#- Code systems: one canonical URI and a short name each, with the other spellings
    met in the wild (OIDs, https, trailing slashes, letter case). -#}
{% macro fhir_code_systems() -%}
    {{ return([
        {'uri': 'http://loinc.org', 'name': 'loinc', 'aliases': ['urn:oid:2.16.840.1.113883.6.1']},
        {'uri': 'http://snomed.info/sct', 'name': 'snomed', 'aliases': ['urn:oid:2.16.840.1.113883.6.96', 'http://snomed.info/id']},
        {'uri': 'http://www.nlm.nih.gov/research/umls/rxnorm', 'name': 'rxnorm', 'aliases': ['urn:oid:2.16.840.1.113883.6.88']},
        {'uri': 'http://hl7.org/fhir/sid/icd-10-cm', 'name': 'icd10cm', 'aliases': ['urn:oid:2.16.840.1.113883.6.90']},
        {'uri': 'http://hl7.org/fhir/sid/icd-10', 'name': 'icd10', 'aliases': ['urn:oid:2.16.840.1.113883.6.3']},
        {'uri': 'http://hl7.org/fhir/sid/icd-9-cm', 'name': 'icd9cm', 'aliases': ['urn:oid:2.16.840.1.113883.6.103']},
        {'uri': 'http://www.cms.gov/Medicare/Coding/ICD10', 'name': 'icd10pcs', 'aliases': ['urn:oid:2.16.840.1.113883.6.4']},
        {'uri': 'http://hl7.org/fhir/sid/cvx', 'name': 'cvx', 'aliases': ['urn:oid:2.16.840.1.113883.12.292']},
        {'uri': 'http://hl7.org/fhir/sid/ndc', 'name': 'ndc', 'aliases': ['urn:oid:2.16.840.1.113883.6.69']},
        {'uri': 'http://www.ama-assn.org/go/cpt', 'name': 'cpt', 'aliases': ['urn:oid:2.16.840.1.113883.6.12']},
        {'uri': 'urn:oid:2.16.840.1.113883.6.285', 'name': 'hcpcs', 'aliases': ['http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets']},
        {'uri': 'http://unitsofmeasure.org', 'name': 'ucum', 'aliases': ['urn:oid:2.16.840.1.113883.6.8']},
        {'uri': 'urn:oid:2.16.840.1.113883.6.238', 'name': 'cdcrec', 'aliases': []},
        {'uri': 'http://terminology.hl7.org/CodeSystem/v3-ActCode', 'name': 'actcode', 'aliases': ['urn:oid:2.16.840.1.113883.5.4', 'http://hl7.org/fhir/v3/ActCode']},
        {'uri': 'http://terminology.hl7.org/CodeSystem/observation-category', 'name': 'observation-category', 'aliases': ['http://hl7.org/fhir/observation-category']},
        {'uri': 'http://terminology.hl7.org/CodeSystem/condition-clinical', 'name': 'condition-clinical', 'aliases': ['http://hl7.org/fhir/condition-clinical']},
        {'uri': 'http://terminology.hl7.org/CodeSystem/condition-ver-status', 'name': 'condition-ver-status', 'aliases': ['http://hl7.org/fhir/condition-ver-status']},
        {'uri': 'http://terminology.hl7.org/CodeSystem/condition-category', 'name': 'condition-category', 'aliases': ['http://hl7.org/fhir/condition-category']},
    ]) }}
{%- endmacro %}


{#- The canonical URI of the code system in `column`; a system not in the catalogue is
    kept as written (trimmed), an empty one is NULL. -#}
{% macro normalize_code_system(column) -%}
    case lower(rtrim(trim({{ column }}), '/'))
    {%- for s in fhir_code_systems() %}
        {%- for spelling in [s.uri] + s.aliases %}
        when '{{ spelling | lower }}' then '{{ s.uri }}'
        when '{{ spelling | lower | replace("http://", "https://") }}' then '{{ s.uri }}'
        {%- endfor %}
    {%- endfor %}
        else nullif(trim({{ column }}), '')
    end
{%- endmacro %}


{#- The short name (loinc, snomed, rxnorm, icd10cm, cvx, …) of the code system in
    `column`; NULL for a system not in the catalogue. -#}
{% macro code_system_name(column) -%}
    case {{ normalize_code_system(column) }}
    {%- for s in fhir_code_systems() %}
        when '{{ s.uri }}' then '{{ s.name }}'
    {%- endfor %}
    end
{%- endmacro %}
