{#- No two rows share the same values of `columns` (a composite key); in an incremental
    run, over the rows the run wrote (fhir_tested_rows), since every key of a delta is
    among the changed keys that the merge removes from the base. -#}
{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ fhir_tested_rows(model) }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
