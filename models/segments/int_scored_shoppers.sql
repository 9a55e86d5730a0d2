{#- Every scored shopper of the current model with the features the segment marts aggregate: the one
    join of user_segments to user_features (segment_profiles and segment_summary read it). A view:
    it costs nothing to keep and always shows the latest scoring. -#}
{{ config(materialized='view') }}

select
    user_segments.user_id,
    user_segments.segment_id,
    {%- for feature in segment_profile_features() %}
        user_features.{{ feature }},
    {%- endfor %}
    user_features.orders
from {{ ref('user_segments') }} as user_segments
inner join {{ ref('user_features') }} as user_features
    on user_segments.user_id = user_features.user_id
where user_segments.segment_status = 'scored'
