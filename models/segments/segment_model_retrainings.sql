{#- One row per retraining (a model version that has a previous one): how much the new version
    agrees with the previous one on the same shoppers, and what happened to the segments. -#}
{{ config(materialized='view') }}

with lineage as (
    select
        model_version,
        max(trained_at) as trained_at,
        cast(max(case when param_name = 'previous_version' then value end) as integer) as previous_version,
        cast(max(case when param_name = 'compared_users' then value end) as {{ dbt.type_bigint() }})
            as compared_users,
        max(case when param_name = 'agreement_ari' then value end) as agreement_ari,
        max(case when param_name = 'same_segment_share' then value end) as same_segment_share,
        max(case when param_name = 'changed_segment_share' then value end) as changed_segment_share,
        cast(max(case when param_name = 'kept_segments' then value end) as integer) as kept_segments,
        cast(max(case when param_name = 'new_segments' then value end) as integer) as new_segments,
        cast(max(case when param_name = 'retired_segments' then value end) as integer) as retired_segments
    from {{ segment_model_relation() }}
    where param_group = 'lineage' and segment_id is null
    group by model_version
)

select *
from lineage
where previous_version is not null
