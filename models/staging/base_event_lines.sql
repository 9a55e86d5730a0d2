{#- Every landed line split into its nine REES46 fields (as text), with the first rule it breaks.
    A view: staging models read only the lines of pending files through it. Typing happens in
    stg_events, after rejected lines are filtered out: evaluating the rules once per line, not once
    per typed column, keeps the parse affordable at tens of millions of lines. -#}
{{ config(materialized='view') }}

with lines as (
    select
        event_lines.load_id,
        event_lines.line_number,
        event_files.file_name as source_file,
        event_files.loaded_at,
        event_lines.line
    from {{ source('raw', 'event_lines') }} as event_lines
    inner join {{ source('raw', 'event_files') }} as event_files
        on event_lines.load_id = event_files.load_id
),

fields as (
    select
        load_id,
        line_number,
        source_file,
        loaded_at,
        line,
        {{ field_count('line') }} as field_count,
        {{ raw_field('line', 1) }} as event_time_text,
        {{ raw_field('line', 2) }} as event_type,
        {{ raw_field('line', 3) }} as product_id_text,
        {{ raw_field('line', 4) }} as category_id_text,
        {{ raw_field('line', 5) }} as category_code_text,
        {{ raw_field('line', 6) }} as brand_text,
        {{ raw_field('line', 7) }} as price_text,
        {{ raw_field('line', 8) }} as user_id_text,
        {{ raw_field('line', 9) }} as user_session
    from lines
),

checked as (
    select
        *,
        {{ event_reject_reason() }} as reject_reason
    from fields
)

select *
from checked
