-- The segments of the current model share all scored shoppers between them.
select sum(user_share) as total_share
from {{ ref('segment_profiles') }}
having abs(sum(user_share) - 1) > 1e-9
