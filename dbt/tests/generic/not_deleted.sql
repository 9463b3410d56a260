{#- No row refers to a deleted resource: every non-null value of the column is the id
    of a resource of `resource_type` whose latest version is not a delete. -#}
{% test not_deleted(model, column_name, resource_type) %}
select m.{{ column_name }} as resource_id
from {{ model }} as m
join {{ ref('int_resources__latest') }} as r
    on r.resource_type = '{{ resource_type }}'
   and r.resource_id = m.{{ column_name }}
   and r.is_deleted
{% endtest %}
