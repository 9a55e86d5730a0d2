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
