-- The latest version of every resource: the previous snapshot's state and this run's
-- speed rows ranked by the lake's latest-version order (macro fhir_latest_order:
-- versionId while every version ranked carries one, then lastUpdated, then the order
-- of arrival). Deletes stay as tombstones (is_deleted), so that an older version
-- arriving late never resurrects a deleted resource. The ranking is a total order over
-- the versions ranked together, so previous state ∪ new rows picks what a full rebuild
-- picks (docs/format/latest.md says when a server's versionIds and lastUpdated disagree).
-- An incremental run ranks only the resources it changed (macro fhir_resources_delta,
-- the same order) and this model is the merged state: the base without the changed
-- keys, and the delta (macros/state.sql).
{%- if fhir_incremental() %}
{{ fhir_merged_state('int_resources__latest', ref('int_resources__delta')) }}
{%- else %}
with versions as (
    select * from {{ ref('stg_batch__resources') }}
    union all by name
    select * from {{ ref('stg_fhir__resources') }}
),

ranked as (
    select *, {{ fhir_versioned() }} as versioned
    from versions
)

select
    * exclude (versioned),
    operation = 'delete' as is_deleted
from ranked
qualify row_number() over (
    partition by resource_type, resource_id
    order by {{ fhir_latest_order() }}
) = 1
{%- endif %}
