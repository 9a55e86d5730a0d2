{#- One row per segment of every model version: its name, portrait, distinctive traits and
    marketing action, and the segment of the previous version it continues. -#}
{{ config(materialized='view') }}

select
    model_version,
    segment_id,
    max(case when param_group = 'segment' and param_name = 'persona_key' then text_value end) as persona_key,
    max(case when param_group = 'segment' and param_name = 'segment_name' then text_value end) as segment_name,
    max(case when param_group = 'segment' and param_name = 'description' then text_value end) as description,
    max(case when param_group = 'segment' and param_name = 'distinctive_traits' then text_value end)
        as distinctive_traits,
    max(case when param_group = 'segment' and param_name = 'marketing_action' then text_value end)
        as marketing_action,
    max(case when param_group = 'segment' and param_name = 'persona_score' then value end) as persona_score,
    cast(max(case when param_group = 'lineage' and param_name = 'previous_segment_id' then value end) as integer)
        as previous_segment_id,
    max(case when param_group = 'lineage' and param_name = 'match_distance' then value end) as match_distance
from {{ segment_model_relation() }}
where
    segment_id is not null
    and (
        param_group = 'segment'
        or (param_group = 'lineage' and param_name in ('previous_segment_id', 'match_distance'))
    )
group by model_version, segment_id
