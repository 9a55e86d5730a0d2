{#- The load audit: one row per landed file, and how its lines were split between clean events,
    rejected rows, removed duplicates, erased lines and events already past the retention window.
    Written after stg_events and stg_events_rejected, it also marks the files they have processed
    (see pending_load_ids). Quarantined files (no line stored) have their row too, with the loader's
    reason. New columns are appended to an existing audit. -#}
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

classified_lines as (
    select
        lines.load_id,
        lines.reject_reason,
        lines.event_time_text,
        -- A valid line's user field is already checked: no need to parse the line again.
        case
            when lines.reject_reason is null
                then {{ canonical_user_id('lines.user_id_text') }} in ({{ erased_user_ids_as('user_id_text') }})
            else {{ is_line_of_erased_shopper('lines.line') }}
        end as is_erased
    -- The lines of the files of `files` that have lines (a quarantined file has none).
    from {{ pending_event_lines() }} as lines
),

stored_lines as (
    select
        load_id,
        count(*) as lines_stored,
        {{ count_where('is_erased') }} as erased_lines,
        {{ count_where('reject_reason is null and not is_erased') }} as valid_lines,
        -- Valid events already outside the retention window when the file arrived: stg_events purged
        -- them at once. The text form sorts like the time (the pattern fixes its layout).
        {{ count_where(
            "reject_reason is null and not is_erased and substring(event_time_text, 1, 19) < cast("
            ~ retention_cutoff() ~ " as " ~ dbt.type_string() ~ ")"
        ) }} as expired_lines,
        -- Cast only the two extremes.
        min(case when reject_reason is null then event_time_text end) as first_event_text,
        max(case when reject_reason is null then event_time_text end) as last_event_text
    from classified_lines
    group by load_id
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
    cast(coalesce(stored_lines.expired_lines, 0) as {{ dbt.type_bigint() }}) as rows_expired,
    cast(substring(stored_lines.first_event_text, 1, 19) as {{ dbt.type_timestamp() }}) as first_event_at,
    cast(substring(stored_lines.last_event_text, 1, 19) as {{ dbt.type_timestamp() }}) as last_event_at,
    -- Valid lines neither kept nor expired are exact duplicates of an event already kept.
    cast(
        coalesce(stored_lines.valid_lines, 0) - coalesce(stored_lines.expired_lines, 0)
        - coalesce(accepted.rows_accepted, 0) as {{ dbt.type_bigint() }}
    ) as rows_duplicate,
    files.loaded_at
from files
left join stored_lines on files.load_id = stored_lines.load_id
left join accepted on files.load_id = accepted.load_id
left join rejected on files.load_id = rejected.load_id
