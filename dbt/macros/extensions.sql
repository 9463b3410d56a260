{#- FHIR extensions, read from a resource held as JSON text.

    urls: the URL of an extension, or a list of URLs that walks into a complex
          extension: ['http://hl7.org/fhir/us/core/StructureDefinition/us-core-race',
          'ombCategory'] is every ombCategory inside the US Core race extension.

    Nothing here fails on sparse data: a resource without the extension, an extension
    without the expected value, or JSON that does not parse all give NULL (or an empty
    list for the _values macros). -#}


{#- Every extension at the URL path, as a list of JSON objects. -#}
{% macro fhir_extensions(resource, urls) -%}
    {%- set path = [urls] if urls is string else urls -%}
    {%- set ns = namespace(expr="[try_cast(" ~ resource ~ " as json)]") -%}
    {%- for url in path -%}
        {%- set ns.expr = "list_filter(flatten(list_transform(" ~ ns.expr ~ ", lambda e: coalesce(try_cast(json_extract(e, '$.extension') as json[]), []::json[]))), lambda e: json_extract_string(e, '$.url') = '" ~ (url | replace("'", "''")) ~ "')" -%}
    {%- endfor -%}
    {{ ns.expr }}
{%- endmacro %}


{#- The value of an extension object as text. value_path such as '$.valueCoding.display'
    picks one element; none takes the first value[x] present, a Coding or
    CodeableConcept giving its code. -#}
{% macro fhir_extension_value_of(ext, value_path=none) -%}
    {%- if value_path -%}
    json_extract_string({{ ext }}, '{{ value_path }}')
    {%- else -%}
    coalesce(
        json_extract_string({{ ext }}, '$.valueCode'),
        json_extract_string({{ ext }}, '$.valueString'),
        json_extract_string({{ ext }}, '$.valueCoding.code'),
        json_extract_string({{ ext }}, '$.valueCodeableConcept.coding[0].code'),
        json_extract_string({{ ext }}, '$.valueBoolean'),
        json_extract_string({{ ext }}, '$.valueInteger'),
        json_extract_string({{ ext }}, '$.valueDecimal'),
        json_extract_string({{ ext }}, '$.valueDate'),
        json_extract_string({{ ext }}, '$.valueDateTime'),
        json_extract_string({{ ext }}, '$.valueUri'),
        json_extract_string({{ ext }}, '$.valueUrl'),
        json_extract_string({{ ext }}, '$.valueIdentifier.value'),
        json_extract_string({{ ext }}, '$.valueReference.reference'),
        json_extract_string({{ ext }}, '$.valueQuantity.value')
    )
    {%- endif -%}
{%- endmacro %}


{#- The value of the first extension at the URL path, as text (NULL when absent). -#}
{% macro fhir_extension_value(resource, urls, value_path=none) -%}
    list_transform({{ fhir_extensions(resource, urls) }}, lambda x: {{ fhir_extension_value_of('x', value_path) }})[1]
{%- endmacro %}


{#- The values of every extension at the URL path, as a list of text (empty when absent):
    all the OMB race categories of a patient, for instance. -#}
{% macro fhir_extension_values(resource, urls, value_path=none) -%}
    list_filter(list_transform({{ fhir_extensions(resource, urls) }}, lambda x: {{ fhir_extension_value_of('x', value_path) }}), lambda v: v is not null)
{%- endmacro %}
