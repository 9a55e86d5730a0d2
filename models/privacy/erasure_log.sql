{#- One row per erasure request applied: when the build that removed the shopper from every table
    ran. Built after every table holding shopper rows (the depends_on lines), it records no
    personal data: the request id and dates only. -#}
-- depends_on: {{ ref('stg_events') }}
-- depends_on: {{ ref('stg_events_rejected') }}
-- depends_on: {{ ref('int_sessions') }}
-- depends_on: {{ ref('user_features') }}
-- depends_on: {{ ref('user_segments') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail'
) }}

select
    requests.request_id,
    min(requests.requested_at) as requested_at,
    cast({{ dbt.current_timestamp() }} as {{ dbt.type_timestamp() }}) as applied_at
from {{ source('privacy', 'erasure_requests') }} as requests
{% if is_incremental() %}
    where requests.request_id not in (select logged.request_id from {{ this }} as logged)
{% endif %}
group by requests.request_id
