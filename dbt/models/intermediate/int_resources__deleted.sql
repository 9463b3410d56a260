-- The keys of the resources whose latest version is a delete: what the not_deleted tests
-- join every reference against. A run-local table (never exported): one scan of the
-- state's tombstones, where each of those tests would otherwise scan the whole state.
{{ config(materialized='table') }}
select resource_type, resource_id
from {{ ref('int_resources__latest') }}
where is_deleted
