{#- The tenant's lake root: var('lake'), else $FHIRLAKE_LAKE, else the part of
    $FHIRLAKE_SPEED_RESOURCES before /speed/, else the demo's lake. models/staging/_sources.yml
    applies the same rule (YAML cannot call macros). -#}
{% macro fhir_lake() -%}
    {{ return(var('lake') or env_var('FHIRLAKE_LAKE', '') or env_var('FHIRLAKE_SPEED_RESOURCES', '').split('/speed/')[0] or '../lake/acme') }}
{%- endmacro %}


{#- The date partitions of a speed dataset that the compaction plan holds files of, as
    the compactor says in var speed_partitions; none for a run by hand (every partition). -#}
{% macro fhir_speed_partitions(dataset) -%}
    {%- set planned = var('speed_partitions') -%}
    {{ return(none if planned is none else planned.get(dataset, [])) }}
{%- endmacro %}


{#- Whether the run has files of a speed dataset to read: the plan says so, or, for a run
    by hand, a glob of the lake. While dbt parses, every dataset counts as present, so
    that every source() and ref() a model may use is recorded. -#}
{% macro fhir_speed_present(dataset) -%}
    {%- if not execute -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set partitions = fhir_speed_partitions(dataset) -%}
    {%- if partitions is not none -%}
        {{ return(partitions | length > 0) }}
    {%- endif -%}
    {%- set found = run_query("select count(*) from glob('" ~ (fhir_lake() | replace("'", "''")) ~ "/speed/" ~ dataset ~ "/*/*.parquet')") -%}
    {{ return(found.columns[0].values()[0] > 0) }}
{%- endmacro %}
