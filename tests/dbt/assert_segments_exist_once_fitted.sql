-- Once a model version is fitted, the segment marts hold its segments. They are empty only while
-- no version is (assert_segment_model_is_fitted warns then).
with fitted as (
    select count(*) as parameter_rows
    from {{ fitted_relation('segment_model') }}
),

marts as (
    select
        'segment_profiles' as mart,
        count(*) as segments
    from {{ ref('segment_profiles') }}
    union all
    select
        'segment_summary' as mart,
        count(*) as segments
    from {{ ref('segment_summary') }}
)

select marts.mart
from marts
cross join fitted
where fitted.parameter_rows > 0 and marts.segments = 0
