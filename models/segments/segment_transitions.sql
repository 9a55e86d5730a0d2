{#- Moves between segments, from the assignment history (snapshot user_segment_history): one row
    per day of change, previous and new model version, previous and new segment. A retraining
    re-scores everyone, so its rows show who kept their segment id and who moved.
    A shopper's previous period is the history row that the snapshot closed when it opened this one
    (its dbt_valid_to is this row's dbt_valid_from: both are the time of that snapshot), so the pairs
    come from a join on the few closed rows rather than a window over the whole history. -#}
{{ config(materialized='table') }}

with changes as (
    select
        cast(current_period.dbt_valid_from as date) as changed_on,
        previous_period.model_version as from_model_version,
        current_period.model_version as to_model_version,
        previous_period.segment_status as from_status,
        current_period.segment_status as to_status,
        previous_period.segment_id as from_segment_id,
        current_period.segment_id as to_segment_id
    from {{ ref('user_segment_history') }} as current_period
    inner join {{ ref('user_segment_history') }} as previous_period
        on
            current_period.user_id = previous_period.user_id
            and current_period.dbt_valid_from = previous_period.dbt_valid_to
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
