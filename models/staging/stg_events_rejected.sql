{#- Every landed line that breaks a rule, untouched, with the name of the first rule it breaks. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail'
) }}

select
    load_id,
    line_number,
    source_file,
    reject_reason,
    line as raw_line,
    loaded_at
from {{ ref('base_event_lines') }} as lines
where
    reject_reason is not null
    and load_id in ({{ pending_load_ids() }})
    {% if is_incremental() %}
        and not exists (
            select 1
            from {{ this }} as known
            where known.load_id = lines.load_id and known.line_number = lines.line_number
        )
    {% endif %}
