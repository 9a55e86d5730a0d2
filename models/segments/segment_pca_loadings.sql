{#- The loadings of the kept principal components: what each component is made of. -#}
{{ config(materialized='view') }}

select
    model_version,
    component,
    feature_name,
    value as loading
from {{ segment_model_relation() }}
where param_group = 'pca' and param_name = 'loading'
