-- One row per stored change: renamed and cast, nothing else.
select
    tenant,
    resource_type,
    id as resource_id,
    version_id,
    try_cast(version_id as bigint) as version_number,
    last_updated,
    operation,
    topic as kafka_topic,
    "partition" as kafka_partition,
    "offset" as kafka_offset,
    ingest_time,
    cast(resource as json) as resource
from {{ source('speed', 'resources') }}
