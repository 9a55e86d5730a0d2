{#- One row per segment of every model version: its name, portrait and marketing action. -#}
{{ config(materialized='view') }}

select
    model_version,
    segment_id,
    max(case when param_name = 'persona_key' then text_value end) as persona_key,
    max(case when param_name = 'segment_name' then text_value end) as segment_name,
    max(case when param_name = 'description' then text_value end) as description,
    max(case when param_name = 'marketing_action' then text_value end) as marketing_action,
    max(case when param_name = 'persona_score' then value end) as persona_score
from {{ ref('segment_model') }}
where param_group = 'segment'
group by model_version, segment_id
