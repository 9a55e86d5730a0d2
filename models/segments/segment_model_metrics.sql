{#- The quality metrics of every model version, as written by the fit. -#}
{{ config(materialized='view') }}

select
    model_version,
    param_name as metric_name,
    segment_id,
    component,
    value as metric_value,
    trained_at
from {{ segment_model_relation() }}
where param_group = 'metric'
