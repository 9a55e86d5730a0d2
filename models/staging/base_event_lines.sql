{#- Every landed line split into its nine REES46 fields (as text), with the first rule it breaks.
    A view: staging models read only the lines of pending files through it. Typing happens in
    stg_events, after rejected lines are filtered out: evaluating the rules once per line, not once
    per typed column, keeps the parse affordable at tens of millions of lines. How each line is
    split and checked once is the warehouse's business: split_and_check_lines (macros/rules). -#}
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
)

{{ split_and_check_lines('lines') }}
