{#- The materialization of the intermediate and mart models when the compactor runs
    the project (var export_dir set): the model's query is streamed by COPY into
    <export_dir>/<model>.parquet, and the model becomes a view over that file, which is
    what later models and the tests read.

    Why not `table` + a COPY post-hook, or dbt-duckdb's `external`: both first write the
    rows into the DuckDB database file, which for the resource JSON of a million
    resources costs ten times the COPY itself. The file written here is the one the
    compactor uploads, and only after every model and test of the run has passed. -#}
{% materialization snapshot_parquet, adapter='duckdb' %}
    {%- set location = var('export_dir') ~ '/' ~ this.identifier ~ '.parquet' -%}
    {%- set target_relation = this.incorporate(type='view') -%}
    {%- set existing_relation = load_cached_relation(this) -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {% call statement('export') -%}
        copy ({{ compiled_code }})
        to '{{ location | replace("'", "''") }}'
        (format parquet, compression zstd, row_group_size 122880)
    {%- endcall %}

    {%- if existing_relation is not none and existing_relation.type != 'view' %}
        {{ drop_relation_if_exists(existing_relation) }}
    {%- endif %}
    {% call statement('main') -%}
        create or replace view {{ target_relation }} as
        select * from read_parquet('{{ location | replace("'", "''") }}')
    {%- endcall %}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {{ adapter.commit() }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}

    {% do persist_docs(target_relation, model) %}
    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
