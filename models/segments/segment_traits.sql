{#- Per segment and model feature: where the segment's centroid sits compared with the whole
    population, the basis of its name and portrait. -#}
{{ config(materialized='view') }}

with traits as (
    select
        model_version,
        segment_id,
        feature_name,
        max(case when param_name = 'centroid_z' then value end) as centroid_z,
        max(case when param_name = 'centroid_value' then value end) as centroid_value,
        max(case when param_name = 'population_value' then value end) as population_value,
        cast(max(case when param_name = 'distinctive_rank' then value end) as integer) as distinctive_rank
    from {{ segment_model_relation() }}
    where param_group = 'trait'
    group by model_version, segment_id, feature_name
)

select
    traits.model_version,
    traits.segment_id,
    labels.segment_name,
    traits.feature_name,
    traits.centroid_z,
    traits.centroid_value,
    traits.population_value,
    traits.distinctive_rank,
    traits.distinctive_rank is not null as is_distinctive
from traits
left join {{ ref('segment_labels') }} as labels
    on
        traits.model_version = labels.model_version
        and traits.segment_id = labels.segment_id
