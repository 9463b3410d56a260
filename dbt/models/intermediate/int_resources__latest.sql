-- The latest version of every resource: the previous snapshot's state and this run's
-- speed rows ranked by versionId (numerically when it is a number), then lastUpdated,
-- then Kafka coordinates. Deletes stay as tombstones (is_deleted), so that an older
-- version arriving late never resurrects a deleted resource. The ranking is a total
-- order, so previous state ∪ new rows picks what a full rebuild picks.
with versions as (
    select * from {{ ref('stg_batch__resources') }}
    union all by name
    select * from {{ ref('stg_fhir__resources') }}
)

select
    *,
    operation = 'delete' as is_deleted
from versions
qualify row_number() over (
    partition by resource_type, resource_id
    order by version_number desc nulls last, version_id desc nulls last,
             last_updated desc nulls last, kafka_offset desc, kafka_partition desc,
             kafka_topic desc, ingest_time desc
) = 1
