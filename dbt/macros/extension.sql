{#- The value of the extension with the given URL on a FHIR resource held as JSON,
    as text; NULL (never a failure) when the extension is absent.
    value_path: the JSON path of the value inside the extension, e.g. '$.valueCode'. -#}
{% macro fhir_extension(resource, url, value_path) -%}
    json_extract_string(
        list_filter(
            coalesce(cast(json_extract({{ resource }}, '$.extension') as json[]), []::json[]),
            lambda e: json_extract_string(e, '$.url') = '{{ url }}'
        )[1],
        '{{ value_path }}'
    )
{%- endmacro %}
