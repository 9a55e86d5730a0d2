{#- The semantic layer's time spine (MetricFlow needs one to aggregate metrics by day, week, month...):
    one row per day. The range covers the REES46 history (from October 2019) and years to come; a
    day without activity still gets its row, so a metric joined to the spine can show a zero.
    The number of days is counted here, not by the warehouse (dbt.date_spine asks it with a query),
    so the model also compiles offline (the Redshift checks). -#}
{{ config(materialized='table') }}

{%- set first_day = modules.datetime.date(2015, 1, 1) %}
{%- set last_day = modules.datetime.date(2040, 12, 31) %}

with day_numbers as (
    {{ dbt.generate_series((last_day - first_day).days + 1) }}
)

select
    cast(
        {{ dbt.dateadd('day', 'cast(generated_number as integer) - 1', "cast('" ~ first_day ~ "' as date)") }}
        as date
    ) as date_day
from day_numbers
