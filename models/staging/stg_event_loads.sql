{#- The load audit: one row per landed file, and how its lines were split between clean events,
    rejected rows and removed duplicates. Written after stg_events and stg_events_rejected, it also
    marks the files they have processed (see pending_load_ids). -#}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail'
) }}

with files as (
    select *
    from {{ source('raw', 'event_files') }}
    {% if is_incremental() %}
        where load_id not in (select audited.load_id from {{ this }} as audited)
    {% endif %}
),

stored_lines as (
    select
        load_id,
        count(*) as lines_stored,
        {{ count_where('reject_reason is null') }} as valid_lines
    from {{ ref('base_event_lines') }}
    where load_id in (select files.load_id from files)
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
        count(*) as rows_rejected
    from {{ ref('stg_events_rejected') }}
    where load_id in (select files.load_id from files)
    group by load_id
)

select
    files.load_id,
    files.file_name,
    files.status,
    files.duplicate_of_load_id,
    files.content_sha256,
    files.file_bytes,
    files.has_header,
    files.line_count as rows_in_file,
    cast(coalesce(stored_lines.lines_stored, 0) as {{ dbt.type_bigint() }}) as rows_read,
    cast(coalesce(accepted.rows_accepted, 0) as {{ dbt.type_bigint() }}) as rows_accepted,
    cast(coalesce(rejected.rows_rejected, 0) as {{ dbt.type_bigint() }}) as rows_rejected,
    -- Valid lines that were not kept are exact duplicates of an event already kept.
    cast(
        coalesce(stored_lines.valid_lines, 0) - coalesce(accepted.rows_accepted, 0) as {{ dbt.type_bigint() }}
    ) as rows_duplicate,
    files.loaded_at
from files
left join stored_lines on files.load_id = stored_lines.load_id
left join accepted on files.load_id = accepted.load_id
left join rejected on files.load_id = rejected.load_id
