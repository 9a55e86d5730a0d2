{#- Loaded files that the staging models still have to process.

    The per-file audit model stg_event_loads is written last in the staging layer, so a file
    listed there has been fully processed by stg_events and stg_events_rejected. Files loaded
    since then (or processed by a run that stopped half-way) are pending. Re-processing a
    file is harmless: both staging models skip rows they already hold.

    The audit model is looked up by name, not with ref(): it depends on the staging models, so
    a ref() here would be a cycle. It is built in the same schema as the model calling this. -#}
{% macro pending_load_ids() -%}
    select load_id
    from {{ source('raw', 'event_files') }}
    where status = 'loaded'
    {%- if is_incremental() %}
        {%- set audit = adapter.get_relation(database=this.database, schema=this.schema, identifier='stg_event_loads') %}
        {%- if audit is not none %}
            and load_id not in (select audited.load_id from {{ audit }} as audited)
        {%- endif %}
    {%- endif %}
{%- endmacro %}
