{% test dbt_utils_free_unique_key(model) %}
-- No resource appears twice.
select resource_type, resource_id, count(*) as n
from {{ model }}
group by 1, 2
having count(*) > 1
{% endtest %}
