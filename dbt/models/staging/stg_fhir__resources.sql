-- Every change of the speed layer in this run's plan, one row per stored change:
-- renamed and cast, nothing else. The resource is JSON text (NULL for a delete).
with source as (
    {{ speed_source('resources', {
        'tenant': 'varchar',
        'resource_type': 'varchar',
        'id': 'varchar',
        'version_id': 'varchar',
        'last_updated': 'timestamptz',
        'operation': 'varchar',
        'topic': 'varchar',
        'partition': 'integer',
        'offset': 'bigint',
        'ingest_time': 'timestamptz',
        'resource': 'varchar',
    }) }}
)

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
    resource
from source
