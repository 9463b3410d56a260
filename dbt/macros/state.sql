{#- Merge-on-read state (docs/format/snapshot.md). A snapshot's state model is its base
    files (written by a rebuild, carried by reference from snapshot to snapshot), the
    keys of every resource changed since (changed) and their current rows (delta).
    Readers read the base rows whose key is not changed, and the delta rows: Iceberg
    v2's equality deletes.

    var state_mode says what a run does with the previous state:
    - rebuild (the default, and every run by hand): the previous state is read whole,
      ranked with the new rows, and every state model is written as a new base;
    - incremental: only the resources this run changed are ranked again — the base and
      delta rows of their keys and the new rows — and written as the new delta, with
      the changed keys (int_state__changed); the base is not read but by key, nor
      written. The state models become views of base ∖ changed ∪ delta, which the
      marts and tests read. -#}


{% macro fhir_incremental() -%}
    {{ return(var('state_mode', 'rebuild') == 'incremental') }}
{%- endmacro %}


{#- The files of one part (base, changed or delta) of the previous snapshot's state
    model, from the run's previous_state (fhir_run_var; model → part → files, as DuckDB reads them). -#}
{% macro fhir_previous_files(model_name, part) -%}
    {%- set state = fhir_run_var('previous_state', {}) or {} -%}
    {{ return((state.get(model_name) or {}).get(part) or []) }}
{%- endmacro %}


{% macro fhir_read_files(files) -%}
read_parquet([{% for f in files %}'{{ f | replace("'", "''") }}'{{ ", " if not loop.last }}{% endfor %}], union_by_name = true)
{%- endmacro %}


{#- `alias` joined (semi or anti) on the state key to relation `other`. -#}
{% macro fhir_key_join(kind, other, alias, other_alias) -%}
{{ kind }} join {{ other }} as {{ other_alias }}
    on {{ other_alias }}.resource_type = {{ alias }}.resource_type and {{ other_alias }}.resource_id = {{ alias }}.resource_id
{%- endmacro %}


{#- The previous state's rows of a state model that this run ranks again, as one query,
    or the empty string when the previous snapshot holds none. A rebuild: every row of
    the merged state. An incremental run: the rows of the resources it changed only
    (int_state__new_keys), base rows of keys not changed before and delta rows. -#}
{% macro fhir_previous_rows(model_name) -%}
    {%- set base = fhir_previous_files(model_name, 'base') -%}
    {%- set changed = fhir_previous_files(model_name, 'changed') -%}
    {%- set delta = fhir_previous_files(model_name, 'delta') -%}
    {%- set keys = ref('int_state__new_keys') if fhir_incremental() else none -%}
    {%- set parts = [] -%}
    {%- if base -%}
        {%- set q = "select b.* from " ~ fhir_read_files(base) ~ " as b" -%}
        {%- if keys is not none -%}
            {%- set q = q ~ "\n" ~ fhir_key_join('semi', keys, 'b', 'k') -%}
        {%- endif -%}
        {%- if changed -%}
            {%- set q = q ~ "\n" ~ fhir_key_join('anti', fhir_read_files(changed), 'b', 'c') -%}
        {%- endif -%}
        {%- do parts.append(q) -%}
    {%- endif -%}
    {%- if delta -%}
        {%- set q = "select d.* from " ~ fhir_read_files(delta) ~ " as d" -%}
        {%- if keys is not none -%}
            {%- set q = q ~ "\n" ~ fhir_key_join('semi', keys, 'd', 'k') -%}
        {%- endif -%}
        {%- do parts.append(q) -%}
    {%- endif -%}
    {{ return(parts | join("\nunion all by name\n")) }}
{%- endmacro %}


{#- The previous delta rows an incremental run keeps as they are: those of resources it
    did not change. Empty string: none. -#}
{% macro fhir_previous_delta_kept(model_name) -%}
    {#- the ref before the files: dbt records it while it parses, when the run's
        previous state is not known yet (fhir_run_var) -#}
    {%- set keys = ref('int_state__new_keys') -%}
    {%- set delta = fhir_previous_files(model_name, 'delta') -%}
    {%- if not delta -%}
        {{ return('') }}
    {%- endif -%}
    {{ return("select d.* from " ~ fhir_read_files(delta) ~ " as d\n" ~ fhir_key_join('anti', keys, 'd', 'k')) }}
{%- endmacro %}


{#- A state model in an incremental run: the previous base without the changed keys
    (int_state__changed, old and new), and the new delta. -#}
{% macro fhir_merged_state(model_name, delta) -%}
    {%- set base = fhir_previous_files(model_name, 'base') -%}
    {%- set changed = ref('int_state__changed') -%}
    {%- if base %}
select b.* from {{ fhir_read_files(base) }} as b
{{ fhir_key_join('anti', changed, 'b', 'c') }}
union all by name
    {%- endif %}
select * from {{ delta }}
{%- endmacro %}


{#- The new delta of the raw dataset's state: the latest version of each resource this
    run changed, ranked from its previous rows and this run's (fhir_latest_order, as
    int_resources__latest ranks), tombstones included; and the previous delta rows of
    the others. -#}
{% macro fhir_resources_delta() -%}
    {%- set kept = fhir_previous_delta_kept('int_resources__latest') %}
with versions as (
    select * from {{ ref('stg_batch__resources') }}
    union all by name
    select * from {{ ref('stg_fhir__resources') }}
),

ranked as (
    select *, {{ fhir_versioned() }} as versioned
    from versions
),

latest as (
    select
        * exclude (versioned),
        operation = 'delete' as is_deleted
    from ranked
    qualify row_number() over (
        partition by resource_type, resource_id
        order by {{ fhir_latest_order() }}
    ) = 1
)

select * from latest
{%- if kept %}
union all by name
{{ kept }}
{%- endif %}
{%- endmacro %}


{#- The new delta of a view's state: the rows of the changed resources' latest
    versions (latest_view_rows over their previous and new rows, matched against
    int_resources__delta), and the previous delta rows of the others. -#}
{% macro fhir_view_delta(view) -%}
    {%- set kept = fhir_previous_delta_kept(fhir_state_model(view)) %}
select * from (
{{ latest_view_rows_of(view, ref('int_resources__delta')) }}
)
{%- if kept %}
union all by name
{{ kept }}
{%- endif %}
{%- endmacro %}


{% macro fhir_state_model(dataset) -%}
    {{ return('int_' ~ dataset ~ '__latest') }}
{%- endmacro %}


{#- The keys of the resources this run read changes of in the view datasets, as one
    query over the plan's files of every view dataset (their lineage columns only; one
    scan, where a union of every view's staging model would hold a join per view). A
    change's raw row and view rows may fall in different runs, so the view rows count
    too. The erased changes are left out (fhir_not_erased), as from every staging
    model, so that no changed key names an erased resource. Empty string: the plan has
    no view file. -#}
{% macro fhir_planned_view_keys() -%}
    {%- if not execute -%}
        {#- the run's partitions are known once dbt executes; the plan it joins is a source -#}
        {%- do source('compaction', 'plan') -%}
        {{ return('') }}
    {%- endif -%}
    {%- set planned = fhir_run_var('speed_partitions') or {} -%}
    {%- set globs = [] -%}
    {%- for dataset, dates in planned.items() | sort -%}
        {%- if dataset != 'resources' -%}
            {%- for date in dates -%}
                {%- do globs.append("'" ~ (fhir_lake() | replace("'", "''")) ~ "/speed/" ~ dataset ~ "/date=" ~ date ~ "/*.parquet'") -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if not globs -%}
        {{ return('') }}
    {%- endif -%}
    {%- set erased = ("\n    where " ~ fhir_not_erased('views', 's')) if var('erasure_file', '') else '' -%}
    {{ return("select s._resource_type as resource_type, s._resource_id as resource_id
    from read_parquet([" ~ (globs | join(", ")) ~ "], hive_partitioning = true, union_by_name = true, filename = true) as s
    semi join " ~ source('compaction', 'plan') ~ " as p
        on p.date = cast(s.date as varchar)
        and p.file = parse_filename(s.filename)
        and p.dataset = split_part(split_part(s.filename, '/speed/', -1), '/', 1)" ~ erased) }}
{%- endmacro %}


{#- The state model of a dataset as a resource mart reads it: int_<dataset>__latest;
    in the mart's delta model (<mart>__delta, generated by the compactor for an
    incremental run), the state's delta, int_<dataset>__delta, so that the mart's own
    SQL yields the mart rows of the resources changed since the base. A mart row is a
    function of its resource's rows alone, which is what lets it merge on read. -#}
{% macro fhir_state(dataset) -%}
    {%- if this.identifier.endswith('__delta') -%}
        {{ return(ref('int_' ~ dataset ~ '__delta')) }}
    {%- endif -%}
    {{ return(ref(fhir_state_model(dataset))) }}
{%- endmacro %}


{#- The base of a mart merged on read, from the previous snapshot, as DuckDB reads it;
    an incremental run needs one. -#}
{% macro fhir_mart_base(mart) -%}
    {%- set base = fhir_previous_files(mart, 'base') -%}
    {%- if execute and not base -%}
        {{ exceptions.raise_compiler_error("the previous snapshot has no base of the mart " ~ mart ~ ": an incremental run needs one") }}
    {%- endif -%}
    {{ return(fhir_read_files(base)) }}
{%- endmacro %}


{#- A mart as an aggregate mart (patient_latest_vitals, encounter_summary) reads it:
    the mart; in the aggregate's delta model (<aggregate>__delta, generated by the
    compactor for an incremental run), the mart's rows whose column `key` is among the
    aggregate's changed keys (<aggregate>__changed), so that the aggregate's own SQL
    yields its rows of those keys alone. `key` none: the mart whole (an input joined
    to rows already restricted). -#}
{% macro fhir_mart(mart, key=none) -%}
    {%- if key is none or not this.identifier.endswith('__delta') -%}
        {{ return(ref(mart)) }}
    {%- endif -%}
    {{ return("(select m.* from " ~ ref(mart) ~ " as m where m." ~ key ~ " in (select * from " ~ ref(this.identifier[:-7] ~ '__changed') ~ "))") }}
{%- endmacro %}


{#- A mart merged on read in an incremental run: its previous base without the keys
    changed since (<mart>__changed), and its delta (<mart>__delta); the base is carried
    from the snapshot that built it. -#}
{% macro fhir_merged_mart(mart, key) -%}
select b.* from {{ fhir_mart_base(mart) }} as b
anti join {{ ref(mart ~ '__changed') }} as c on c.{{ key }} = b.{{ key }}
union all by name
select * from {{ ref(mart ~ '__delta') }}
{%- endmacro %}


{#- The rows a test of `model` reads: the model; in an incremental run, for a model
    merged on read (a state model, a resource mart), the rows the run wrote, its delta
    (int_<dataset>__delta, <mart>__delta). Used by the tests whose failures a row shows
    alone or with rows of its own key (unique, not_null, accepted_values,
    unique_combination): the base rows not superseded were tested when the base was
    written, and no delta row can share a key with one of them, since every key of
    the delta is among the changed keys that the merge removes from the base. -#}
{% macro fhir_tested_rows(model) -%}
    {%- if not (execute and fhir_incremental()) -%}
        {{ return(model) }}
    {%- endif -%}
    {%- set name = model.identifier -%}
    {%- set delta = none -%}
    {%- if name.startswith('int_') and name.endswith('__latest') -%}
        {%- set delta = name[:-8] ~ '__delta' -%}
    {%- else -%}
        {%- set delta = name ~ '__delta' -%}
    {%- endif -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model' and node.name == delta and node.config.enabled -%}
            {{ return(api.Relation.create(database=model.database, schema=model.schema, identifier=delta)) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(model) }}
{%- endmacro %}
