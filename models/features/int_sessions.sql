{#- One row per shopping session (user_id, user_session): what happened in it.
    Incremental: sessions that received events from newly loaded files are recomputed from all
    their events, so a session spread over several files ends up exactly as in a full refresh. -#}
{{ config(
    materialized='incremental',
    unique_key=['user_id', 'user_session'],
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    pre_hook="{{ purge_erased_users() }}",
    post_hook="{{ purge_expired('session_start') }}"
) }}

with
{% if is_incremental() %}
    -- The events of the files loaded since the previous run.
    new_events as (
        select
            user_id,
            user_session,
            event_time
        from {{ ref('stg_events') }}
        where load_id in ({{ loads_since_built(this) }})
    ),

    -- Sessions that received new events, and sessions that lost events to the retention window
    -- (the post-hook drops those left with none).
    -- (union all + distinct: Redshift has no `union distinct`, and a bare union reads ambiguously)
    touched_sessions as (
        select distinct
            touched.user_id,
            touched.user_session
        from (
            select
                user_id,
                user_session
            from new_events
            union all
            select
                user_id,
                user_session
            from {{ this }}
            where session_start < {{ retention_cutoff() }}
        ) as touched
    ),

    -- Every event of a touched session is at or after the earliest of: the known start of the
    -- touched sessions already built, and the new events. Bounding the read of stg_events by that
    -- time lets a daily run skip the blocks of older files (their events are earlier).
    earliest_touched_event as (
        select min(bounds.event_time) as event_time
        from (
            select min(new_events.event_time) as event_time
            from new_events
            union all
            select min(known.session_start) as event_time
            from {{ this }} as known
            inner join touched_sessions
                on
                    known.user_id = touched_sessions.user_id
                    and known.user_session = touched_sessions.user_session
        ) as bounds
    ),
{% endif %}

-- Inlined on full builds only (cte_inlined): a daily run's events are few, and stored once they
-- cost less than reading the history twice.
events as {{ cte_inlined() if not is_incremental() else '' }} (
    select stg_events.*
    from {{ ref('stg_events') }} as stg_events
    {% if is_incremental() %}
        inner join touched_sessions
            on
                stg_events.user_id = touched_sessions.user_id
                and stg_events.user_session = touched_sessions.user_session
        -- Nothing touched (a run with no new file): the end of the data, not NULL, which would read every block.
        where stg_events.event_time >= (
                select coalesce(earliest_touched_event.event_time, {{ data_end() }}) from earliest_touched_event
            )
    {% endif %}
),

flagged_events as (
    select
        events.user_id,
        events.user_session,
        events.event_time,
        events.event_type,
        events.product_id,
        events.price,
        events.load_id,
        case when {{ is_weekend('events.event_time') }} then 1 else 0 end as is_weekend,
        case when {{ is_night('events.event_time') }} then 1 else 0 end as is_night,
        case when calendar.calendar_date is not null then 1 else 0 end as is_marketing_day
    from events
    left join {{ ref('marketing_calendar') }} as calendar
        on cast(events.event_time as date) = calendar.calendar_date
),

-- One row per product of a session, with whether it was carted and bought there. Its count is the
-- session's distinct products, and the carted ones give the cart outcome: one grouping instead of a
-- distinct count per session plus a pass over the cart events (the month's sessions: 38 s to 30 s).
session_products as (
    select
        user_id,
        user_session,
        product_id,
        max(case when event_type = 'cart' then 1 else 0 end) as was_carted,
        max(case when event_type = 'purchase' then 1 else 0 end) as was_purchased
    from events
    group by user_id, user_session, product_id
),

product_outcomes as (
    select
        user_id,
        user_session,
        count(product_id) as distinct_products,
        sum(was_carted) as carted_products,
        sum(was_carted * was_purchased) as purchased_carted_products
    from session_products
    group by user_id, user_session
),

session_totals as (
    select
        user_id,
        user_session,
        min(event_time) as session_start,
        max(event_time) as session_end,
        count(*) as events,
        {{ count_where("event_type = 'view'") }} as views,
        {{ count_where("event_type = 'cart'") }} as carts,
        {{ count_where("event_type = 'remove_from_cart'") }} as removes,
        {{ count_where("event_type = 'purchase'") }} as purchases,
        coalesce(sum(case when event_type = 'purchase' then price end), 0) as revenue,
        {{ count_where("event_type = 'purchase' and price is not null") }} as priced_purchases,
        {{ count_where("event_type = 'view' and price is not null") }} as priced_views,
        coalesce(sum(case when event_type = 'view' then price end), 0) as viewed_price_total,
        {{ count_where('is_weekend = 1') }} as weekend_events,
        {{ count_where('is_night = 1') }} as night_events,
        {{ count_where('is_marketing_day = 1') }} as marketing_day_events,
        {{ count_where("is_marketing_day = 1 and event_type = 'purchase'") }} as marketing_day_purchases,
        max(load_id) as last_load_id
    from flagged_events
    group by user_id, user_session
)

select
    session_totals.user_id,
    session_totals.user_session,
    session_totals.session_start,
    session_totals.session_end,
    cast(
        {{ seconds_between('session_totals.session_start', 'session_totals.session_end') }}  -- noqa: LT05
        as {{ dbt.type_bigint() }}
    ) as duration_seconds,
    cast(session_totals.events as {{ dbt.type_bigint() }}) as events,
    session_totals.views,
    session_totals.carts,
    session_totals.removes,
    session_totals.purchases,
    cast(session_totals.revenue as {{ type_money() }}) as revenue,
    session_totals.priced_purchases,
    session_totals.priced_views,
    cast(session_totals.viewed_price_total as {{ type_money() }}) as viewed_price_total,
    cast(product_outcomes.distinct_products as {{ dbt.type_bigint() }}) as distinct_products,
    cast(product_outcomes.carted_products as {{ dbt.type_bigint() }}) as carted_products,
    cast(product_outcomes.purchased_carted_products as {{ dbt.type_bigint() }})
        as purchased_carted_products,
    session_totals.weekend_events,
    session_totals.night_events,
    session_totals.marketing_day_events,
    session_totals.marketing_day_purchases,
    session_totals.last_load_id
from session_totals
-- Every session has at least one event, hence one product row (a NULL product_id is a group too).
inner join product_outcomes
    on session_totals.user_id = product_outcomes.user_id and session_totals.user_session = product_outcomes.user_session
