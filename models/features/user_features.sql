{#- One row per shopper: the behavioural features the segmentation uses (formulas in _features.yml).
    A view over int_user_features, the stored table, adding recency_days at read time. Recency is
    measured to the end of the data, which moves for every shopper each day: computed when read,
    it is always current and a daily run rewrites only the shoppers it recomputes. The end of the
    data is the newest of the shoppers' last events, the time of the last clean event (data_end). -#}
{{ config(materialized='view', bind=false) }}

-- Every stored column passes through as it is (documented with user_features in _features.yml).
select
    stored.*,  -- noqa: AM04
    {{ recency_days('stored.last_event_at', data_end(ref('int_user_features'), 'last_event_at')) }} as recency_days
from {{ ref('int_user_features') }} as stored
