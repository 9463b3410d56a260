-- The latest version of a resource is never older than a version read in this run: a
-- late-arriving older version (or a replayed one) must not resurrect a deleted resource
-- nor replace a newer one.
select s.resource_type, s.resource_id, s.version_id as read_version, l.version_id as kept_version
from {{ ref('stg_fhir__resources') }} as s
join {{ ref('int_resources__latest') }} as l using (resource_type, resource_id)
where s.version_number > l.version_number
   or (s.version_number = l.version_number and s.last_updated > l.last_updated)
