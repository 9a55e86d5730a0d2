{#- Generic data tests written here because the dbt package hub (dbt_utils, dbt_expectations)
    cannot be reached from the build machines. Each returns the failing rows. -#}

{#- Every non-null value of the column lies in [min_value, max_value] (either bound optional). -#}
{% test in_range(model, column_name, min_value=none, max_value=none) %}
    select {{ column_name }}
    from {{ model }}
    where
        {{ column_name }} is not null
        and (
            false
            {%- if min_value is not none %} or {{ column_name }} < {{ min_value }}{% endif %}
            {%- if max_value is not none %} or {{ column_name }} > {{ max_value }}{% endif %}
        )
{% endtest %}


{#- No two rows share the same values of `combination_of_columns`. -#}
{% test unique_combination(model, combination_of_columns) %}
    select
        {{ combination_of_columns | join(', ') }},
        count(*) as copies
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}
    having count(*) > 1
{% endtest %}


{#- `expression` holds on every row (rows where it is false or NULL fail). -#}
{% test expression_is_true(model, expression) %}
    select *
    from {{ model }}
    where not coalesce({{ expression }}, false)
{% endtest %}


{#- The model holds at least one row. -#}
{% test not_empty(model) %}
    select 'no rows' as problem
    where not exists (select 1 from {{ model }})
{% endtest %}
