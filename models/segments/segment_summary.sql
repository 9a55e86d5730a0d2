{#- One row per segment of the current model, ready for dashboards: who they are, how many, what
    they are worth and what marketing should do. Built from tables every warehouse has
    (segment_profiles, int_scored_shoppers), in portable SQL. -#}
{{ config(materialized='table') }}

with scored as (
    select
        segment_id,
        purchases,
        orders,
        coalesce(revenue, 0) as revenue
    from {{ ref('int_scored_shoppers') }}
),

per_segment as (
    select
        segment_id,
        count(*) as users,
        {{ count_where('purchases > 0') }} as buyers,
        sum(orders) as orders,
        sum(revenue) as revenue
    from scored
    group by segment_id
),

totals as (
    select
        count(*) as users,
        sum(revenue) as revenue
    from scored
),

structure as (
    -- The verdict on structure of each model version (docs/model.md, "Is there structure?").
    select
        model_version,
        text_value as structure_verdict
    from {{ segment_model_relation() }}
    where param_group = 'structure' and param_name = 'verdict'
),

summary as (
    select
        profiles.model_version,
        structure.structure_verdict,
        profiles.segment_id,
        profiles.segment_name,
        profiles.persona_key,
        profiles.description,
        profiles.distinctive_traits,
        profiles.marketing_action,
        coalesce(per_segment.users, 0) as users,
        coalesce(per_segment.buyers, 0) as buyers,
        coalesce(per_segment.orders, 0) as orders,
        coalesce(per_segment.revenue, 0) as revenue,
        totals.users as total_users,
        totals.revenue as total_revenue
    from {{ ref('segment_profiles') }} as profiles
    cross join totals
    left join per_segment on profiles.segment_id = per_segment.segment_id
    left join structure on profiles.model_version = structure.model_version
)

select
    cast(model_version as integer) as model_version,
    cast(segment_id as integer) as segment_id,
    cast(segment_name as varchar) as segment_name,
    cast(persona_key as varchar) as persona_key,
    cast(description as {{ type_long_text() }}) as description,
    cast(distinctive_traits as {{ type_long_text() }}) as distinctive_traits,
    cast(marketing_action as {{ type_long_text() }}) as marketing_action,
    cast(users as {{ dbt.type_bigint() }}) as users,
    {{ safe_divide('users', 'total_users') }} as user_share,
    cast(buyers as {{ dbt.type_bigint() }}) as buyers,
    {{ safe_divide('buyers', 'users') }} as conversion_rate,
    cast(orders as {{ dbt.type_bigint() }}) as orders,
    cast(revenue as {{ type_money() }}) as revenue,
    {{ safe_divide('revenue', 'total_revenue') }} as revenue_share,
    {{ safe_divide('revenue', 'orders') }} as avg_order_value,
    {{ safe_divide('revenue', 'users') }} as revenue_per_user,
    cast(structure_verdict as varchar) as structure_verdict
from summary
