{#- The grain of the semantic layer (models/semantic/_semantic.yml): one row per scored shopper and
    day with activity, carrying the shopper's segment. Counting distinct shoppers over these rows is
    right for any period, and the money columns add up over any set of rows. A view: the metrics
    read it at query time, so it costs the build nothing. -#}
{{ config(materialized='view') }}

with scored_shoppers as (
    select
        user_id,
        model_version,
        segment_id,
        segment_name
    from {{ ref('user_segments') }}
    where segment_status = 'scored'
),

shopper_days as (
    select
        sessions.user_id,
        cast(sessions.session_start as date) as activity_date,
        count(*) as sessions,
        {{ count_where('sessions.purchases > 0') }} as orders,
        -- Summed as exact decimals (money), cast at the end: a sum of doubles depends on the order in
        -- which the engine's threads add the rows, so the same data would give other last bits.
        sum(coalesce(sessions.revenue, 0)) as revenue
    from {{ ref('int_sessions') }} as sessions
    inner join scored_shoppers on sessions.user_id = scored_shoppers.user_id
    group by sessions.user_id, cast(sessions.session_start as date)
)

select
    shopper_days.activity_date,
    shopper_days.user_id,
    scored_shoppers.model_version,
    scored_shoppers.segment_id,
    scored_shoppers.segment_name,
    shopper_days.sessions,
    shopper_days.orders,
    cast(shopper_days.revenue as {{ type_double() }}) as revenue,
    -- This row's part of the revenue of all scored shoppers over the whole data: parts add up, so
    -- their sum over a segment is the segment's revenue share (segment_summary.revenue_share).
    {{ safe_divide('cast(shopper_days.revenue as ' ~ type_double() ~ ')',
                   'cast(sum(shopper_days.revenue) over () as ' ~ type_double() ~ ')') }} as revenue_share
from shopper_days
inner join scored_shoppers on shopper_days.user_id = scored_shoppers.user_id
