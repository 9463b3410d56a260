{#- The rows of one speed dataset that this run reads, as a subquery with exactly the
    given columns, each cast to its type.

    dataset: a directory under speed/ (resources, patient, observation, …).
    columns: source column → DuckDB type, every column the caller reads. View datasets
             get their lineage columns (_resource_id, _version_id, …) added.

    Degrades instead of failing: a column absent from the files is NULL (the files are
    stacked by name onto an empty, typed row set), a value that does not cast is NULL,
    and a dataset without files in the plan (a tenant with no procedures yet) yields no
    rows with the same columns. Only the plan's files are read: its date partitions
    (var speed_partitions) are the only directories listed, and their files are matched
    by name against the plan (var plan_file). -#}
{% macro speed_source(dataset, columns) -%}
    {%- set relation = fhir_speed_relation(dataset) -%}
    {%- set cols = {} -%}
    {%- if dataset != 'resources' -%}
        {%- do cols.update(fhir_view_lineage_columns()) -%}
    {%- endif -%}
    {%- do cols.update(columns) -%}
    {%- set extra = fhir_extra_columns(dataset, columns) -%}
    (
        select
        {%- for name, type in cols.items() %}
            try_cast({{ adapter.quote(name) }} as {{ type }}) as {{ adapter.quote(name) }}{{ "," if not loop.last or extra }}
        {%- endfor %}
        {%- for name in extra %}
            {{ adapter.quote(name) }}{{ "," if not loop.last }}
        {%- endfor %}
        from (
            select
            {%- for name, type in cols.items() %}
                cast(null as {{ type }}) as {{ adapter.quote(name) }}{{ "," if not loop.last }}
            {%- endfor %}
            where false
            {%- if fhir_speed_present(dataset) %}
            union all by name
            select s.* exclude (filename, date)
            from {{ relation }} as s
            {{ fhir_plan_filter(dataset, 's') }}
            {%- endif %}
        )
    )
{%- endmacro %}


{#- Keeps, of the rows of a speed dataset read as `alias` (with its filename and date
    columns), those of the compaction plan's files (var plan_file; every file for a run
    by hand) that no erasure removed (var erasure_file). -#}
{% macro fhir_plan_filter(dataset, alias) -%}
    {%- set conditions = [] -%}
    {%- if var('plan_file') -%}
        {%- do conditions.append("exists (
        select 1
        from " ~ source('compaction', 'plan') ~ " as p
        where p.dataset = '" ~ dataset ~ "'
          and p.date = cast(" ~ alias ~ ".date as varchar)
          and p.file = parse_filename(" ~ alias ~ ".filename)
    )") -%}
    {%- endif -%}
    {%- if var('erasure_file', '') -%}
        {%- do conditions.append(fhir_not_erased(dataset, alias)) -%}
    {%- endif -%}
    {%- if conditions %}
    where {{ conditions | join('\n    and ') }}
    {%- endif -%}
{%- endmacro %}


{#- The replay rule of an erasure (docs/format/erasure.md): a row of an erased resource
    stored from an offset before the erasure's position on its partition is dropped, so
    that a replay of the topic never brings it back; a later change passes. -#}
{% macro fhir_not_erased(dataset, alias) -%}
    {%- set c = {'type': 'resource_type', 'id': 'id', 'topic': 'topic', 'partition': 'partition', 'offset': 'offset'} -%}
    {%- if dataset != 'resources' -%}
        {%- set c = {'type': '_resource_type', 'id': '_resource_id', 'topic': '_topic', 'partition': '_partition', 'offset': '_offset'} -%}
    {%- endif -%}
    not exists (
        select 1
        from read_csv('{{ var('erasure_file') | replace("'", "''") }}', header = true,
            columns = {'key': 'VARCHAR', 'topic': 'VARCHAR', 'partition': 'INTEGER', 'before': 'BIGINT'}) as e
        where e.key = sha256({{ alias }}.{{ adapter.quote(c.type) }} || '/' || {{ alias }}.{{ adapter.quote(c.id) }})
          and e.topic = {{ alias }}.{{ adapter.quote(c.topic) }}
          and e.partition = {{ alias }}.{{ adapter.quote(c.partition) }}
          and {{ alias }}.{{ adapter.quote(c.offset) }} < e.before
    )
{%- endmacro %}


{#- The files of a speed dataset this run reads, as a relation: the plan's date
    partitions only (a glob of every partition would list, and read the footer of,
    every file the speed layer still holds), or, for a run by hand, the source. -#}
{% macro fhir_speed_relation(dataset) -%}
    {%- set relation = source('speed', dataset) -%}
    {%- set partitions = fhir_speed_partitions(dataset) -%}
    {%- if partitions -%}
        {%- set globs = [] -%}
        {%- for date in partitions -%}
            {%- do globs.append("'" ~ (fhir_lake() | replace("'", "''")) ~ "/speed/" ~ dataset ~ "/date=" ~ date ~ "/*.parquet'") -%}
        {%- endfor -%}
        {%- set relation = "read_parquet([" ~ (globs | join(", ")) ~ "], hive_partitioning = true, union_by_name = true, filename = true)" -%}
    {%- endif -%}
    {{ return(relation) }}
{%- endmacro %}


{#- The columns the files of a view dataset hold beyond the lineage and `columns`, in
    the files' order: a typed staging model passes them on as stored
    (stg_view_rest), so that the state keeps every column of the view, not only those
    the marts read. None for the raw dataset, or without files. -#}
{% macro fhir_extra_columns(dataset, columns) -%}
    {%- if not execute or dataset == 'resources' or not fhir_speed_present(dataset) -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set described = run_query("select column_name from (describe select * from " ~ fhir_speed_relation(dataset) ~ ")") -%}
    {%- set known = (fhir_view_lineage_columns().keys() | list) + (columns.keys() | list) + ['filename', 'date'] -%}
    {%- set out = [] -%}
    {%- for name in described.columns[0].values() -%}
        {%- if name not in known -%}
            {%- do out.append(name) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(out) }}
{%- endmacro %}


{#- The rest of a typed staging model's select list: the columns fhir_extra_columns
    finds, each after a comma; nothing when there are none. -#}
{% macro stg_view_rest(dataset, columns) -%}
    {%- for name in fhir_extra_columns(dataset, columns) -%}
        , {{ adapter.quote(name) }}
    {%- endfor -%}
{%- endmacro %}


{#- The lineage columns every view dataset carries (consumer/views.go). -#}
{% macro fhir_view_lineage_columns() -%}
    {{ return({
        '_tenant': 'varchar',
        '_resource_type': 'varchar',
        '_resource_id': 'varchar',
        '_version_id': 'varchar',
        '_last_updated': 'timestamptz',
        '_topic': 'varchar',
        '_partition': 'integer',
        '_offset': 'bigint',
        '_ingest_time': 'timestamptz',
        '_row': 'integer',
    }) }}
{%- endmacro %}


{#- The lineage columns of a view dataset, renamed: the select list every view's
    staging model starts with. -#}
{% macro stg_view_lineage() -%}
        _tenant as tenant,
        _resource_type as resource_type,
        _resource_id as resource_id,
        _version_id as version_id,
        try_cast(_version_id as bigint) as version_number,
        _last_updated as last_updated,
        _topic as kafka_topic,
        _partition as kafka_partition,
        _offset as kafka_offset,
        _ingest_time as ingest_time,
        _row as row_index
{%- endmacro %}


{#- The previous snapshot's rows of one state model (fhir_previous_rows: the merged
    state, or in an incremental run those of the resources it changed), stacked by name onto the columns
    of `like`, the staging model of the same data. A view's state keeps every column it
    holds (one this run's files lack, such as a view column no mart reads, stays);
    with only_like, the rows are cut to the columns of `like` (the raw dataset, whose
    state adds is_deleted). No previous snapshot, or one without this model: no rows,
    the columns of `like`. -#}
{% macro snapshot_source(model_name, like, only_like=false) -%}
    {%- set previous = fhir_previous_rows(model_name) -%}
    {%- set present = execute and previous -%}
    {%- set cols = adapter.get_columns_in_relation(like) if execute and only_like else [] -%}
    select
    {%- for c in cols %}
        {{ adapter.quote(c.name) }}{{ "," if not loop.last }}
    {%- else %}
        *
    {%- endfor %}
    from (
        select * from {{ like }} where false
        {%- if present %}
        union all by name
        select * from (
            {{ previous }}
        )
        {%- endif %}
    )
{%- endmacro %}


{#- The rows of a view dataset the project has no typed staging model for (a default view
    no mart reads, a custom view from views_dir), as stored: its lineage columns renamed as
    stg_view_lineage does, every other column as the files hold it. The compactor
    generates one stg_fhir__<dataset> per such dataset (compactor/models.go). Without
    files in the plan: the lineage columns alone, no rows. -#}
{% macro stg_view_rows(dataset) -%}
    {%- set lineage = fhir_view_lineage_columns() -%}
    {%- set partitions = fhir_speed_partitions(dataset) -%}
    {%- set present = fhir_speed_present(dataset) -%}
    {%- set globs = [] -%}
    {%- if partitions is none -%}
        {%- do globs.append("'" ~ (fhir_lake() | replace("'", "''")) ~ "/speed/" ~ dataset ~ "/*/*.parquet'") -%}
    {%- else -%}
        {%- for date in partitions -%}
            {%- do globs.append("'" ~ (fhir_lake() | replace("'", "''")) ~ "/speed/" ~ dataset ~ "/date=" ~ date ~ "/*.parquet'") -%}
        {%- endfor -%}
    {%- endif %}
with source as (
    select
    {%- for name, type in lineage.items() %}
        cast(null as {{ type }}) as {{ adapter.quote(name) }}{{ "," if not loop.last }}
    {%- endfor %}
    where false
    {%- if present and globs %}
    union all by name
    select s.* exclude (filename, date)
    from read_parquet([{{ globs | join(", ") }}], hive_partitioning = true, union_by_name = true, filename = true) as s
    {{ fhir_plan_filter(dataset, 's') }}
    {%- endif %}
)

select
    {{ stg_view_lineage() }},
    * exclude ({% for name in lineage %}{{ adapter.quote(name) }}{{ ", " if not loop.last }}{% endfor %})
from source
{%- endmacro %}


{#- The previous snapshot's rows of a generated state model, every column it holds,
    stacked by name onto the columns of `like`. No previous snapshot, or one without this
    model: no rows. -#}
{% macro snapshot_rows(model_name, like) -%}
    {%- set previous = fhir_previous_rows(model_name) -%}
    {%- set present = execute and previous -%}
    select * from (
        select * from {{ like }} where false
        {%- if present %}
        union all by name
        select * from (
            {{ previous }}
        )
        {%- endif %}
    )
{%- endmacro %}
