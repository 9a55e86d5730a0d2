{#- Moves between segments, from the assignment history (snapshot user_segment_history): one row
    per day of change, previous and new model version, previous and new segment. A retraining
    re-scores everyone, so its rows show who kept their segment id and who moved. -#}
{{ config(materialized='table') }}

with history as (
    select
        user_id,
        segment_status,
        segment_id,
        model_version,
        dbt_valid_from,
        lag(segment_status) over (partition by user_id order by dbt_valid_from) as previous_status,
        lag(segment_id) over (partition by user_id order by dbt_valid_from) as previous_segment_id,
        lag(model_version) over (partition by user_id order by dbt_valid_from) as previous_model_version
    from {{ ref('user_segment_history') }}
),

changes as (
    select
        cast(dbt_valid_from as date) as changed_on,
        previous_model_version as from_model_version,
        model_version as to_model_version,
        previous_status as from_status,
        segment_status as to_status,
        previous_segment_id as from_segment_id,
        segment_id as to_segment_id
    from history
    where previous_model_version is not null
)

select
    changed_on,
    from_model_version,
    to_model_version,
    from_status,
    to_status,
    from_segment_id,
    to_segment_id,
    coalesce(from_segment_id, -1) = coalesce(to_segment_id, -1) and from_status = to_status as kept_segment,
    count(*) as users
from changes
group by
    changed_on, from_model_version, to_model_version, from_status, to_status, from_segment_id, to_segment_id
