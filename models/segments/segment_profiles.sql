{#- One row per segment of the current model: size, share and the average shopper. -#}
{{ config(materialized='table') }}

{%- set profile_features = segment_profile_features() %}

with current_labels as (
    select *
    from {{ ref('segment_labels') }}
    where model_version = (select max(versions.model_version) from {{ ref('segment_labels') }} as versions)
),

segment_means as (
    select
        segment_id,
        {%- for feature in profile_features %}
            avg(cast({{ feature }} as {{ type_double() }})) as avg_{{ feature }},
        {%- endfor %}
        count(*) as users
    from {{ ref('int_scored_shoppers') }}
    group by segment_id
),

scored_total as (
    select count(*) as users
    from {{ ref('int_scored_shoppers') }}
)

select
    {%- for feature in profile_features %}
        segment_means.avg_{{ feature }},
    {%- endfor %}
    -- Typed as the model contract says (_segments.yml), the same on every warehouse.
    cast(current_labels.model_version as integer) as model_version,
    cast(current_labels.segment_id as integer) as segment_id,
    cast(current_labels.segment_name as varchar) as segment_name,
    cast(current_labels.description as {{ type_long_text() }}) as description,
    cast(current_labels.distinctive_traits as {{ type_long_text() }}) as distinctive_traits,
    cast(current_labels.marketing_action as {{ type_long_text() }}) as marketing_action,
    cast(current_labels.persona_key as varchar) as persona_key,
    cast(coalesce(segment_means.users, 0) as {{ dbt.type_bigint() }}) as users,
    {{ safe_divide('coalesce(segment_means.users, 0)', 'scored_total.users') }} as user_share
from current_labels
cross join scored_total
left join segment_means on current_labels.segment_id = segment_means.segment_id
