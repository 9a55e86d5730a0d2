{#- One row per shopper: the stored behavioural features (formulas in _features.yml). user_features, the
    relation analysts read, is a view over this one that adds recency_days when it is read: recency
    depends on the end of the data, which moves for every shopper each day, and storing it would
    rewrite every row each day. Incremental: shoppers with events from newly loaded files are
    recomputed from their whole history. -#}
{{ config(
    materialized='incremental',
    unique_key='user_id',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    pre_hook="{{ purge_erased_users() }}",
    post_hook="{{ purge_expired('first_event_at') }}"
) }}

with touched_users as (
    {% if is_incremental() %}
        -- Shoppers with events from newly loaded files, and shoppers who lost events to the
        -- retention window (the post-hook drops those left with none). union all + distinct:
        -- Redshift has no `union distinct`, and a bare union reads ambiguously.
        select distinct touched.user_id
        from (
            select user_id
            from {{ ref('stg_events') }}
            where load_id in ({{ loads_since_built(this) }})
            union all
            select expiring.user_id
            from {{ this }} as expiring
            where expiring.first_event_at < {{ retention_cutoff() }}
        ) as touched
    {% else %}
        select distinct user_id
        from {{ ref('stg_events') }}
    {% endif %}
),

sessions as (
    select int_sessions.*
    from {{ ref('int_sessions') }} as int_sessions
    {% if is_incremental() %}
        inner join touched_users on int_sessions.user_id = touched_users.user_id
    {% endif %}
),

-- Inlined on full builds only (cte_inlined): a daily run's events are few, and stored once they
-- cost less than reading the history twice.
events as {{ cte_inlined() if not is_incremental() else '' }} (
    select stg_events.*
    from {{ ref('stg_events') }} as stg_events
    {% if is_incremental() %}
        inner join touched_users on stg_events.user_id = touched_users.user_id
    {% endif %}
),

session_totals as (
    select
        user_id,
        count(*) as sessions,
        sum(events) as events,
        sum(views) as views,
        sum(carts) as carts,
        sum(removes) as removes,
        sum(purchases) as purchases,
        {{ count_where('purchases > 0') }} as orders,
        {{ count_where('carts > 0') }} as cart_sessions,
        {{ count_where('carts > 0 and purchases = 0') }} as abandoned_cart_sessions,
        sum(carted_products) as carted_products,
        sum(purchased_carted_products) as purchased_carted_products,
        sum(revenue) as revenue,
        sum(priced_purchases) as priced_purchases,
        sum(priced_views) as priced_views,
        sum(viewed_price_total) as viewed_price_total,
        sum(weekend_events) as weekend_events,
        sum(night_events) as night_events,
        sum(marketing_day_events) as marketing_day_events,
        sum(marketing_day_purchases) as marketing_day_purchases,
        avg(cast(duration_seconds as {{ type_double() }})) as avg_session_duration_seconds,
        min(session_start) as first_event_at,
        max(session_end) as last_event_at,
        max(last_load_id) as last_load_id
    from sessions
    group by user_id
),

event_totals as (
    select
        user_id,
        count(distinct product_id) as distinct_products,
        count(distinct category_id) as distinct_categories,
        count(distinct cast(event_time as date)) as active_days
    from events
    group by user_id
),

-- Events per shopper and top-level category (NULL: uncategorised). The category mix and the top
-- category are read from these few rows per shopper, not from every event again.
category_l1_counts as (
    select
        user_id,
        category_l1,
        count(*) as events
    from events
    group by user_id, category_l1
),

category_mix as (
    select
        user_id,
        {%- for category in top_level_categories() %}
            {{ sum_where('events', "category_l1 = '" ~ category ~ "'") }} as {{ category }}_events,
        {%- endfor %}
        {{ sum_where('events', "category_l1 not in ('" ~ top_level_categories() | join("', '") ~ "')") }}
            as other_category_events,
        {{ sum_where('events', 'category_l1 is null') }} as uncategorised_events
    from category_l1_counts
    group by user_id
),

category_counts as (
    select
        user_id,
        coalesce(category_l1, 'uncategorised') as category,
        sum(events) as events
    from category_l1_counts
    group by user_id, coalesce(category_l1, 'uncategorised')
),

top_category as (
    select
        user_id,
        category,
        events
    from (
        select
            category_counts.*,
            row_number() over (partition by user_id order by events desc, category asc) as category_rank
        from category_counts
    ) as ranked
    where category_rank = 1
),

brand_counts as (
    select
        user_id,
        brand,
        count(*) as events
    from events
    where brand is not null
    group by user_id, brand
),

-- distinct_brands counts these groups: one distinct count fewer over the events (the query of a
-- day on the real-shaped month: 3.8 s instead of 4.2 s).
brand_totals as (
    select
        user_id,
        count(*) as distinct_brands,
        max(events) as top_brand_events,
        sum(events) as branded_events
    from brand_counts
    group by user_id
)

select
    session_totals.user_id,
    session_totals.first_event_at,
    session_totals.last_event_at,
    -- activity
    cast(session_totals.events as {{ dbt.type_bigint() }}) as events,
    cast(session_totals.sessions as {{ dbt.type_bigint() }}) as sessions,
    cast(event_totals.active_days as {{ dbt.type_bigint() }}) as active_days,
    {{ seconds_between('session_totals.first_event_at', 'session_totals.last_event_at') }} / 86400.0  -- noqa: LT05
        as tenure_days,
    -- funnel
    cast(session_totals.views as {{ dbt.type_bigint() }}) as views,
    cast(session_totals.carts as {{ dbt.type_bigint() }}) as carts,
    cast(session_totals.removes as {{ dbt.type_bigint() }}) as removes,
    cast(session_totals.purchases as {{ dbt.type_bigint() }}) as purchases,
    {{ safe_divide('session_totals.carts', 'session_totals.views') }} as view_to_cart_rate,
    {{ safe_divide('session_totals.purchased_carted_products', 'session_totals.carted_products') }}
        as cart_to_purchase_rate,
    {{ safe_divide('session_totals.abandoned_cart_sessions', 'session_totals.cart_sessions') }}
        as cart_abandonment_rate,
    {{ safe_divide('session_totals.orders', 'session_totals.sessions') }} as session_conversion_rate,
    -- money
    cast(session_totals.revenue as {{ type_money() }}) as revenue,
    cast(session_totals.orders as {{ dbt.type_bigint() }}) as orders,
    {{ safe_divide('session_totals.revenue', 'session_totals.orders') }} as avg_order_value,
    {{ safe_divide('session_totals.viewed_price_total', 'session_totals.priced_views') }} as avg_viewed_price,
    {{ safe_divide('session_totals.revenue', 'session_totals.priced_purchases') }} as avg_purchased_price,
    -- diversity
    cast(event_totals.distinct_products as {{ dbt.type_bigint() }}) as distinct_products,
    cast(event_totals.distinct_categories as {{ dbt.type_bigint() }}) as distinct_categories,
    cast(coalesce(brand_totals.distinct_brands, 0) as {{ dbt.type_bigint() }}) as distinct_brands,
    top_category.category as top_category,
    {{ safe_divide('top_category.events', 'session_totals.events') }} as top_category_share,
    {{ safe_divide('brand_totals.top_brand_events', 'brand_totals.branded_events') }} as brand_loyalty,
    -- time habits
    {{ safe_divide('session_totals.weekend_events', 'session_totals.events') }} as weekend_share,
    {{ safe_divide('session_totals.night_events', 'session_totals.events') }} as night_share,
    cast(session_totals.avg_session_duration_seconds as {{ type_double() }}) as avg_session_duration_seconds,
    {{ safe_divide('session_totals.events', 'session_totals.sessions') }} as events_per_session,
    -- seasonality
    {{ safe_divide('session_totals.marketing_day_events', 'session_totals.events') }} as marketing_period_share,
    {{ safe_divide('session_totals.marketing_day_purchases', 'session_totals.purchases') }}
        as marketing_period_purchase_share,
    -- category mix
    {%- for category in top_level_categories() %}
        {{ safe_divide('category_mix.' ~ category ~ '_events', 'session_totals.events') }} as share_{{ category }},
    {%- endfor %}
    {{ safe_divide('category_mix.other_category_events', 'session_totals.events') }} as share_other_categories,
    {{ safe_divide('category_mix.uncategorised_events', 'session_totals.events') }} as share_uncategorised,
    session_totals.last_load_id,
    -- When this run recomputed the row from its events: user_segments
    -- re-scores only the shoppers recomputed since it last scored (segment_rescoring_cutoff).
    cast({{ dbt.current_timestamp() }} as {{ dbt.type_timestamp() }}) as computed_at
from session_totals
inner join event_totals on session_totals.user_id = event_totals.user_id
inner join category_mix on session_totals.user_id = category_mix.user_id
inner join top_category on session_totals.user_id = top_category.user_id
left join brand_totals on session_totals.user_id = brand_totals.user_id
