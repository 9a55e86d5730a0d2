{#- The semantic layer's time spine (MetricFlow needs one to aggregate metrics by day, week, month...):
    one row per day. The range covers the REES46 history (from October 2019) and years to come; a
    day without activity still gets its row, so a metric joined to the spine can show a zero. -#}
{{ config(materialized='table') }}

with days as (
    {{ dbt.date_spine('day', "cast('2015-01-01' as date)", "cast('2041-01-01' as date)") }}
)

select cast(date_day as date) as date_day
from days
