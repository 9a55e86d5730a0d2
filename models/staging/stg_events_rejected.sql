{#- Every landed line that breaks a rule, with the name of the first rule it breaks.
    Privacy (docs/gdpr.md): erased shoppers' lines, malformed ones included, are filtered out and purged; with
    `pseudonymise_user_ids` the line's text and user field are not copied here (the raw layer keeps
    them, under restricted access, found by load_id and line_number). Retention: stg_event_loads
    purges the rejected lines of files whose events have all expired. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ purge_erased_lines('raw_line') }}"
) }}

select
    load_id,
    line_number,
    source_file,
    reject_reason,
    {% if var('pseudonymise_user_ids') -%}
        cast(null as {{ dbt.type_string() }}) as raw_line,
        cast(null as {{ dbt.type_string() }}) as user_field,
    {%- else -%}
        line as raw_line,
        user_id_text as user_field,
    {%- endif %}
    loaded_at
from {{ pending_event_lines() }} as lines
where
    reject_reason is not null
    -- Malformed lines of erased shoppers too (is_line_of_erased_shopper, docs/gdpr.md).
    and not {{ is_line_of_erased_shopper('line') }}
    {% if is_incremental() %}
        and not exists (
            select 1
            from {{ this }} as known
            where known.load_id = lines.load_id and known.line_number = lines.line_number
        )
    {% endif %}
