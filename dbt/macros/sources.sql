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
    {%- set relation = source('speed', dataset) -%}
    {%- set partitions = fhir_speed_partitions(dataset) -%}
    {%- if partitions -%}
        {#- The plan's partitions only: a glob of every partition would list, and read the
            footer of, every file the speed layer still holds. -#}
        {%- set globs = [] -%}
        {%- for date in partitions -%}
            {%- do globs.append("'" ~ (fhir_lake() | replace("'", "''")) ~ "/speed/" ~ dataset ~ "/date=" ~ date ~ "/*.parquet'") -%}
        {%- endfor -%}
        {%- set relation = "read_parquet([" ~ (globs | join(", ")) ~ "], hive_partitioning = true, union_by_name = true, filename = true)" -%}
    {%- endif -%}
    {%- set cols = {} -%}
    {%- if dataset != 'resources' -%}
        {%- do cols.update(fhir_view_lineage_columns()) -%}
    {%- endif -%}
    {%- do cols.update(columns) -%}
    (
        select
        {%- for name, type in cols.items() %}
            try_cast({{ adapter.quote(name) }} as {{ type }}) as {{ adapter.quote(name) }}{{ "," if not loop.last }}
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
            {%- if var('plan_file') %}
            where exists (
                select 1
                from {{ source('compaction', 'plan') }} as p
                where p.dataset = '{{ dataset }}'
                  and p.date = cast(s.date as varchar)
                  and p.file = parse_filename(s.filename)
            )
            {%- endif %}
            {%- endif %}
        )
    )
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


{#- The previous snapshot's rows of one state model, in the columns (and order) of
    `like`, the staging model of the same data. No previous snapshot, or one without
    this model: no rows, same columns. -#}
{% macro snapshot_source(model_name, like) -%}
    {%- if not execute -%}
        {%- set _ = source('batch', model_name) -%}
    {%- endif -%}
    {%- set present = execute and var('previous_snapshot') and model_name in var('previous_models') -%}
    {%- set cols = adapter.get_columns_in_relation(like) if execute else [] -%}
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
        select * from {{ source('batch', model_name) }}
        {%- endif %}
    )
{%- endmacro %}
