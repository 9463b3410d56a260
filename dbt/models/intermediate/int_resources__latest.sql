-- The latest version of each resource (by versionId, then lastUpdated, then Kafka
-- offset), deletes included as tombstones so that an older version arriving late never
-- resurrects a deleted resource.
select *
from {{ ref('stg_fhir__resources') }}
qualify row_number() over (
    partition by resource_type, resource_id
    order by version_number desc nulls last, version_id desc nulls last,
             last_updated desc nulls last, kafka_offset desc
) = 1
