{#- The tenant's lake root: var('lake'), else $FHIRLAKE_LAKE, else the part of
    $FHIRLAKE_SPEED_RESOURCES before /speed/, else the demo's lake. models/staging/_sources.yml
    applies the same rule (YAML cannot call macros). -#}
{% macro fhir_lake() -%}
    {{ return(var('lake') or env_var('FHIRLAKE_LAKE', '') or env_var('FHIRLAKE_SPEED_RESOURCES', '').split('/speed/')[0] or '../lake/acme') }}
{%- endmacro %}


{#- The date partitions of a speed dataset that the compaction plan holds files of, as
    the compactor says in var speed_partitions; none for a run by hand (every partition). -#}
{% macro fhir_speed_partitions(dataset) -%}
    {%- set planned = fhir_run_var('speed_partitions') -%}
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


{#- A value of this run that changes from run to run (speed_partitions, previous_state,
    snapshot_id, watermark): from the JSON object in the file var run_file names, read
    once per node while dbt executes, so that the command line's vars stay the same
    from one run to the next and dbt can reuse its parse of the project (partial
    parsing: a change of vars parses it all again). Without run_file, and while dbt
    parses, the var of that name. -#}
{% macro fhir_run_var(name, default=none) -%}
    {%- if execute and var('run_file', '') -%}
        {%- set values = fhir_run_values() -%}
        {{ return(values[name] if name in values else default) }}
    {%- endif -%}
    {{ return(var(name, default)) }}
{%- endmacro %}


{% macro fhir_run_values() -%}
    {%- set got = run_query("select content from read_text('" ~ (var('run_file') | replace("'", "''")) ~ "')") -%}
    {{ return(fromjson(got.columns[0].values()[0])) }}
{%- endmacro %}
