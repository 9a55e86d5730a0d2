{#- Cross-database helpers. Models call these instead of warehouse-specific syntax, so the same SQL
    runs on DuckDB and PostgreSQL and compiles for Redshift. -#}

{#- 64-bit floating point. dbt.type_float() is FLOAT4 on DuckDB, too coarse for money sums. -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'shopper_segments')()) }}
{%- endmacro %}

{% macro default__type_double() -%}double precision{%- endmacro %}


{#- Money, exact: dbt's portable numeric(28,6) holds every price the price rule accepts (12 digits,
    6 decimals) and their sums, which are exact in any order: every total is bit-identical however
    the events were landed. Averages divide an exact total by a count (safe_divide): one rounding,
    the same on every run (docs/data_quality.md, "Money"). -#}
{% macro type_money() -%}{{ return(dbt.type_numeric()) }}{%- endmacro %}


{#- True when the whole of `expr` matches the regular expression `pattern` (no anchors needed).
    Use POSIX classes such as [0-9] rather than \d: Redshift's ~ is POSIX. -#}
{% macro regex_full_match(expr, pattern) -%}
    {{ return(adapter.dispatch('regex_full_match', 'shopper_segments')(expr, pattern)) }}
{%- endmacro %}

{% macro default__regex_full_match(expr, pattern) -%}
    ({{ expr }} ~ '^({{ pattern }})$')
{%- endmacro %}

{% macro duckdb__regex_full_match(expr, pattern) -%}
    regexp_full_match({{ expr }}, '{{ pattern }}')
{%- endmacro %}


{#- numerator / denominator as a double, NULL when the denominator is 0 or NULL.
    Casting first avoids PostgreSQL's integer division. -#}
{% macro safe_divide(numerator, denominator) -%}
    (cast({{ numerator }} as {{ type_double() }}) / nullif({{ denominator }}, 0))
{%- endmacro %}


{#- Seconds from `start` to `end` as a whole number. -#}
{% macro seconds_between(start, end) -%}
    {{ dbt.datediff(start, end, 'second') }}
{%- endmacro %}


{#- Number of rows where `condition` holds: a BIGINT on every warehouse, 0 over no rows. A count of a
    CASE, not a sum of ones cast from DuckDB's HUGEINT sum: the month's per-session totals (ten such
    counts) took 17 s with sums, 7.5 s with counts (docs/benchmarks.md). Standard SQL: no FILTER
    clause, which Redshift lacks. -#}
{% macro count_where(condition) -%}
    count(case when {{ condition }} then 1 end)
{%- endmacro %}


{#- The sum of an integer `value` over the rows meeting `condition`, 0 when none does. -#}
{% macro sum_where(value, condition) -%}
    cast(sum(case when {{ condition }} then {{ value }} else 0 end) as {{ dbt.type_bigint() }})
{%- endmacro %}


{#- Free text of any length (portraits, marketing actions): plain varchar, except on Redshift where a
    bare varchar is varchar(256). Model contracts declare the same type (`data_type` in the YAML). -#}
{% macro type_long_text() -%}
    {{ return(adapter.dispatch('type_long_text', 'shopper_segments')()) }}
{%- endmacro %}

{% macro default__type_long_text() -%}varchar{%- endmacro %}

{% macro redshift__type_long_text() -%}varchar(65535){%- endmacro %}


{#- Every match of the regular expression `pattern` in `expr` replaced by `replacement` (no
    back-references). PostgreSQL and DuckDB replace only the first match without the 'g' flag;
    Redshift replaces all and reads a fourth argument as a position. -#}
{% macro regex_replace_all(expr, pattern, replacement) -%}
    {{ return(adapter.dispatch('regex_replace_all', 'shopper_segments')(expr, pattern, replacement)) }}
{%- endmacro %}

{% macro default__regex_replace_all(expr, pattern, replacement) -%}
    regexp_replace({{ expr }}, '{{ pattern }}', '{{ replacement }}', 'g')
{%- endmacro %}

{% macro redshift__regex_replace_all(expr, pattern, replacement) -%}
    regexp_replace({{ expr }}, '{{ pattern }}', '{{ replacement }}')
{%- endmacro %}
