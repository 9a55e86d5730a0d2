{#- Post-hook of incremental dbt Python models on DuckDB. dbt-duckdb 1.11 writes the new rows of
    an incremental Python model to a `<model>__dbt_tmp<timestamp>` table that it marks as temporary
    but creates as a regular table, and never drops. Drop those leftovers so runs leave nothing behind. -#}
{% macro drop_python_model_leftovers() -%}
    {%- if execute and target.type == 'duckdb' -%}
        {%- set leftovers -%}
            select table_name
            from information_schema.tables
            where
                table_catalog = '{{ this.database }}'
                and table_schema = '{{ this.schema }}'
                and starts_with(table_name, '{{ this.identifier }}__dbt_tmp')
        {%- endset -%}
        {%- for row in run_query(leftovers).rows -%}
            {%- do run_query('drop table if exists ' ~ this.schema ~ '."' ~ row[0] ~ '"') -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{%- endmacro %}
