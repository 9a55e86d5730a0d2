{#- The load audit: one row per landed file, and how its lines were split between clean events,
    rejected rows and removed duplicates. Written after stg_events and stg_events_rejected, it also
    marks the files they have processed (see pending_load_ids). Quarantined files (no line stored)
    have their row too, with the loader's reason. New columns are appended to an existing audit. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    post_hook="{{ purge_landing_layer() }}"
) }}

with files as (
    select *
    from {{ source('raw', 'event_files') }}
    {% if is_incremental() %}
        where load_id not in (select audited.load_id from {{ this }} as audited)
    {% endif %}
),

erased_ids as (
    {{ erased_user_ids_as('user_id_text') }}
),

stored_lines as (
    select
        lines.load_id,
        count(*) as lines_stored,
        {{ count_where('erased_ids.user_id is not null') }} as erased_lines,
        {{ count_where('lines.reject_reason is null and erased_ids.user_id is null') }} as valid_lines,
        -- The text form sorts like the time: cast only the two extremes.
        min(case when lines.reject_reason is null then lines.event_time_text end) as first_event_text,
        max(case when lines.reject_reason is null then lines.event_time_text end) as last_event_text
    from {{ ref('base_event_lines') }} as lines
    left join erased_ids on lines.user_id_text = erased_ids.user_id
    where lines.load_id in (select files.load_id from files)
    group by lines.load_id
),

accepted as (
    select
        load_id,
        count(*) as rows_accepted
    from {{ ref('stg_events') }}
    where load_id in (select files.load_id from files)
    group by load_id
),

rejected as (
    select
        load_id,
        {%- for reason in event_reject_reasons() %}
            {{ count_where("reject_reason = '" ~ reason ~ "'") }} as rejected_{{ reason }},
        {%- endfor %}
        count(*) as rows_rejected
    from {{ ref('stg_events_rejected') }}
    where load_id in (select files.load_id from files)
    group by load_id
)

select
    files.load_id,
    files.file_name,
    files.status,
    files.reason as status_reason,
    files.duplicate_of_load_id,
    files.content_sha256,
    files.file_bytes,
    files.has_header,
    files.line_count as rows_in_file,
    cast(coalesce(stored_lines.lines_stored, 0) as {{ dbt.type_bigint() }}) as rows_read,
    cast(coalesce(accepted.rows_accepted, 0) as {{ dbt.type_bigint() }}) as rows_accepted,
    cast(coalesce(rejected.rows_rejected, 0) as {{ dbt.type_bigint() }}) as rows_rejected,
    {%- for reason in event_reject_reasons() %}
        cast(coalesce(rejected.rejected_{{ reason }}, 0) as {{ dbt.type_bigint() }}) as rejected_{{ reason }},
    {%- endfor %}
    {{ safe_divide('coalesce(rejected.rows_rejected, 0)', 'stored_lines.lines_stored') }} as rejection_rate,
    cast(coalesce(stored_lines.erased_lines, 0) as {{ dbt.type_bigint() }}) as rows_erased,
    cast(substring(stored_lines.first_event_text, 1, 19) as {{ dbt.type_timestamp() }}) as first_event_at,
    cast(substring(stored_lines.last_event_text, 1, 19) as {{ dbt.type_timestamp() }}) as last_event_at,
    -- Valid lines that were not kept are exact duplicates of an event already kept.
    cast(
        coalesce(stored_lines.valid_lines, 0) - coalesce(accepted.rows_accepted, 0) as {{ dbt.type_bigint() }}
    ) as rows_duplicate,
    files.loaded_at
from files
left join stored_lines on files.load_id = stored_lines.load_id
left join accepted on files.load_id = accepted.load_id
left join rejected on files.load_id = rejected.load_id
