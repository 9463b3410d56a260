{#- No row refers to a deleted resource: every non-null value of the column is the id
    of a resource of `resource_type` whose latest version is not a delete. In an
    incremental run, a model merged on read is checked in two parts that together are
    the whole: the rows it wrote (its delta) against every deleted resource, and every
    row against the resources deleted since the base (the tombstones among
    int_resources__delta); a base row referring to a resource deleted before the base
    failed when the base was written. (int_resources__delta, built before any delta
    of a mart, is named without ref: it exists only in an incremental run.) The deleted
    resources are int_resources__deleted, the state's tombstones built once for every
    such test. -#}
{% test not_deleted(model, column_name, resource_type) %}
{%- set written = fhir_tested_rows(model) %}
select m.{{ column_name }} as resource_id
from {{ written }} as m
join {{ ref('int_resources__deleted') }} as r
    on r.resource_type = '{{ resource_type }}'
   and r.resource_id = m.{{ column_name }}
{%- if written != model %}
union all
select m.{{ column_name }} as resource_id
from {{ model }} as m
join {{ api.Relation.create(database=written.database, schema=written.schema, identifier='int_resources__delta') }} as r
    on r.resource_type = '{{ resource_type }}'
   and r.resource_id = m.{{ column_name }}
   and r.is_deleted
{%- endif %}
{% endtest %}
