{#- Every landed line split into its nine REES46 fields, with the first rule it breaks.
    A view: staging models read only the lines of pending files through it. -#}
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

select
    load_id,
    line_number,
    source_file,
    loaded_at,
    line,
    reject_reason,
    -- Typed fields are filled only for valid lines: casting a rejected field would fail.
    case
        when reject_reason is null
            then cast(substring(event_time_text, 1, 19) as {{ dbt.type_timestamp() }})
    end as event_time,
    case when reject_reason is null then event_type end as event_type,
    case when reject_reason is null then cast(product_id_text as {{ dbt.type_bigint() }}) end as product_id,
    case when reject_reason is null then cast(category_id_text as {{ dbt.type_bigint() }}) end as category_id,
    case when reject_reason is null then nullif(category_code_text, '') end as category_code,
    case when reject_reason is null then nullif(brand_text, '') end as brand,
    -- A zero price means "price not recorded" (REES46 has such views): kept as NULL, see docs/data_quality.md.
    case
        when reject_reason is null
            then nullif(cast(price_text as {{ type_double() }}), 0)
    end as price,
    case when reject_reason is null then cast(user_id_text as {{ dbt.type_bigint() }}) end as user_id,
    case when reject_reason is null then user_session end as user_session
from checked
