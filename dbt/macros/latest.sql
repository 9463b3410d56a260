{#- The rows of the latest version of each resource in one view: the previous
    snapshot's state and this run's speed rows, kept when int_resources__latest says
    their version is the resource's latest and is not a delete (the same rule as the
    query layer). A version's rows are matched by their Kafka
    coordinates, so a replayed range yields one copy of each row. An incremental run
    (macros/state.sql) makes it the merged state of base and delta. -#}
{% macro latest_view_rows(view) -%}
    {%- if fhir_incremental() -%}
{{ fhir_merged_state(fhir_state_model(view), ref('int_' ~ view ~ '__delta')) }}
    {%- else -%}
{{ latest_view_rows_of(view, ref('int_resources__latest')) }}
    {%- endif -%}
{%- endmacro %}


{#- latest_view_rows, with the latest versions read from `resources` (a state of the
    raw dataset: int_resources__latest, or an incremental run's int_resources__delta). -#}
{% macro latest_view_rows_of(view, resources) -%}
with versions as (
    select * from {{ ref('stg_batch__' ~ view) }}
    union all by name
    select * from {{ ref('stg_fhir__' ~ view) }}
),

latest as (
    select resource_type, resource_id, version_id, kafka_topic, kafka_partition, kafka_offset
    from {{ resources }}
    where not is_deleted
)

select v.*
from versions as v
semi join latest as l
    on  l.resource_type = v.resource_type
    and l.resource_id = v.resource_id
    and l.kafka_topic = v.kafka_topic
    and l.kafka_partition = v.kafka_partition
    and l.kafka_offset = v.kafka_offset
    and l.version_id is not distinct from v.version_id
qualify row_number() over (
    partition by v.resource_type, v.resource_id, v.row_index
    order by v.ingest_time desc
) = 1
{%- endmacro %}


{#- The order that makes one version of a resource its latest, newest first, over the
    staging columns of the raw dataset and the column versioned (whether every version
    ranked together carries a versionId: fhir_versioned). It restates lake.LatestOrder
    (docs/format/latest.md) under the staging names; lake.TestLatestOrderMatchesDBT
    fails when the two differ. -#}
{% macro fhir_latest_order() -%}
case when versioned then version_number end desc nulls last,
    case when versioned then version_id end desc nulls last,
    coalesce(last_updated, ingest_time) desc, kafka_offset desc, kafka_partition desc,
    kafka_topic desc, ingest_time desc
{%- endmacro %}


{#- Whether every version of a resource ranked together carries a versionId
    (lake.VersionedSQL under the staging names). -#}
{% macro fhir_versioned() -%}
bool_and(version_id is not null) over (partition by resource_type, resource_id)
{%- endmacro %}
