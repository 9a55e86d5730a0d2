{#- How many principal components each model version keeps: the explained-variance curve. -#}
{{ config(materialized='view') }}

select
    model_version,
    component,
    max(case when param_name = 'explained_variance_ratio' then value end) as explained_variance_ratio,
    max(case when param_name = 'cumulative_explained_variance' then value end) as cumulative_explained_variance,
    max(case when param_name = 'kept' then value end) = 1 as is_kept
from {{ segment_model_relation() }}
where param_group = 'pca_selection'
group by model_version, component
