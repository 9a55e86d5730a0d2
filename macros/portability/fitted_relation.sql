{#- A table that a dbt Python model builds on DuckDB and `segments fit` writes on the warehouses
    without dbt Python models (PostgreSQL, Redshift): ref() on DuckDB, the source `fitted` elsewhere
    (models/segments/_fitted_sources.yml). SQL models read Python models' tables through this macro,
    never with a bare ref(): a ref() to a model disabled on the target does not even parse there.
    Adding a Python model: also add its table to the `fitted` source and to FIT_TABLES
    (src/shopper_segments/model/fit.py). -#}
{% macro fitted_relation(name) -%}
    {%- if target.type == 'duckdb' -%}
        {{ return(ref(name)) }}
    {%- else -%}
        {{ return(source('fitted', name)) }}
    {%- endif -%}
{%- endmacro %}
