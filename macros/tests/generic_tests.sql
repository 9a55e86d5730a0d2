{#- Generic data tests written here because the dbt package hub (dbt_utils, dbt_expectations)
    cannot be reached from the build machines. Each returns the failing rows. -#}

{#- A model's column rules, checked in one query that reads the table once: no NULL in the columns of
    `not_null`, no value below its bound in those of `at_least`, none above it in those of `at_most`
    (NULLs are the not-null rule's business). One failing row per broken rule, with how many rows
    break it. One test per model rather than one per column and rule: dbt spends about 40 ms on each
    test node whatever the data, and at scale each of those tests would read the table again. -#}
{% test columns_are_valid(model, not_null=[], at_least={}, at_most={}) %}
    {%- set rules = [] -%}
    {%- for column in not_null %}{% do rules.append(column ~ ' is null') %}{% endfor -%}
    {%- for column, bound in at_least.items() %}{% do rules.append(column ~ ' < ' ~ bound) %}{% endfor -%}
    {%- for column, bound in at_most.items() %}{% do rules.append(column ~ ' > ' ~ bound) %}{% endfor -%}
    with broken as (
        select
        {%- for rule in rules %}
            {{ count_where(rule) }} as rule_{{ loop.index }}{{ ',' if not loop.last }}
        {%- endfor %}
        from {{ model }}
    )
    {%- for rule in rules %}
        select
            '{{ rule }}' as broken_rule,
            rule_{{ loop.index }} as failing_rows
        from broken
        where rule_{{ loop.index }} > 0
        {{ 'union all' if not loop.last }}
    {%- endfor %}
{% endtest %}


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
    {{ adapter.dispatch('repeated_combinations', 'shopper_segments')(model, combination_of_columns) }}
{% endtest %}

{#- The combinations held by more than one row, with their number of copies. -#}
{% macro default__repeated_combinations(model, columns) -%}
    select
        {{ columns | join(', ') }},
        count(*) as copies
    from {{ model }}
    group by {{ columns | join(', ') }}
    having count(*) > 1
{%- endmacro %}

{#- DuckDB: copies share their hash, so only the rows whose hash is repeated are grouped by their
    values, which settles a hash collision exactly. Grouping 42 M events by one number instead of nine
    columns: the uniqueness test of stg_events, 9 s to 4 s on the real-shaped month. hash() groups
    NULLs together, as GROUP BY does. -#}
{% macro duckdb__repeated_combinations(model, columns) -%}
    {%- set row_hash = 'hash(' ~ columns | join(', ') ~ ')' -%}
    select
        {{ columns | join(', ') }},
        count(*) as copies
    from {{ model }}
    where {{ row_hash }} in (
        select {{ row_hash }}
        from {{ model }}
        group by {{ row_hash }}
        having count(*) > 1
    )
    group by {{ columns | join(', ') }}
    having count(*) > 1
{%- endmacro %}


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
