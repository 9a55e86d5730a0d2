{#- The keyword that makes a CTE an optimisation fence (computed once), where a warehouse needs it:
    `with x as {{ cte_materialized() }} (...)`.

    PostgreSQL 12+ inlines a CTE referenced only once. In the scoring chain (impute -> standardise
    -> project -> distances -> nearest) every stage uses each column of the previous one several
    times, so inlining copies the expressions again and again: on PostgreSQL, planning alone took
    15 s and the query ran for minutes on 4,500 shoppers, instead of 0.3 s with the fence. DuckDB
    evaluates CTEs without this blow-up, and Redshift has no MATERIALIZED keyword (dbt-redshift
    would otherwise inherit the postgres__ implementation). -#}
{% macro cte_materialized() -%}
    {{ return(adapter.dispatch('cte_materialized', 'shopper_segments')()) }}
{%- endmacro %}

{% macro default__cte_materialized() -%}{%- endmacro %}

{% macro postgres__cte_materialized() -%}materialized{%- endmacro %}

{% macro redshift__cte_materialized() -%}{%- endmacro %}


{#- The keyword that lets the engine inline a CTE referenced several times instead of storing it once:
    `with x as {{ cte_inlined() }} (...)`. DuckDB stores such a CTE whole, every column of every row:
    for the events of int_sessions and int_user_features on a full build (43 M events, all columns of
    stg_events) that copy cost more than reading the columns each use needs (int_sessions 44 s -> 32 s,
    the features 34 s -> 27 s on the real-shaped month). A daily run's events are few: stored once,
    they cost less than a second read of the history (two months: int_sessions 1.9 s stored, 2.7 s
    inlined; the features 5.5 s and 6.1 s), so the models inline on full builds only. PostgreSQL
    inlines a CTE referenced once and is left to choose; Redshift has no such keyword. -#}
{% macro cte_inlined() -%}
    {{ return(adapter.dispatch('cte_inlined', 'shopper_segments')()) }}
{%- endmacro %}

{% macro default__cte_inlined() -%}{%- endmacro %}

{% macro duckdb__cte_inlined() -%}not materialized{%- endmacro %}
