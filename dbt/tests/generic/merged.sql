{#- dbt's built-in generic tests, over the rows the run wrote (fhir_tested_rows): in
    an incremental run, a model merged on read is tested over its delta, since what
    these tests refuse shows in a row alone (not_null, accepted_values), among the rows
    of one key (unique), or in a row and its parent (relationships: a parent leaves
    only by a delete, which not_deleted checks over the whole merged model). A rebuild
    tests every row. -#}

{% test unique(model, column_name) %}
    {{ adapter.dispatch('test_unique', 'dbt')(fhir_tested_rows(model), column_name) }}
{% endtest %}


{% test not_null(model, column_name) %}
    {{ adapter.dispatch('test_not_null', 'dbt')(fhir_tested_rows(model), column_name) }}
{% endtest %}


{% test accepted_values(model, column_name, values, quote=True) %}
    {{ adapter.dispatch('test_accepted_values', 'dbt')(fhir_tested_rows(model), column_name, values, quote) }}
{% endtest %}


{% test relationships(model, column_name, to, field) %}
    {{ adapter.dispatch('test_relationships', 'dbt')(fhir_tested_rows(model), column_name, to, field) }}
{% endtest %}
