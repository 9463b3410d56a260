-- The latest version of a resource is never older than a version read in this run: a
-- late-arriving older version (or a replayed one) must not resurrect a deleted resource
-- nor replace a newer one. Checked where versionIds decide (every version read and the
-- one kept carry one); without them lastUpdated decides, which the order checks alone.
select s.resource_type, s.resource_id, s.version_id as read_version, l.version_id as kept_version
from {{ ref('stg_fhir__resources') }} as s
join {{ ref('int_resources__latest') }} as l using (resource_type, resource_id)
where l.version_id is not null
  and not exists (
      select 1
      from {{ ref('stg_fhir__resources') }} as x
      where x.resource_type = s.resource_type
        and x.resource_id = s.resource_id
        and x.version_id is null
  )
  and (s.version_number > l.version_number
       or (s.version_number = l.version_number and s.last_updated > l.last_updated))
