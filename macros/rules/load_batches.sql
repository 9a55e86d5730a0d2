{#- Loaded files that the staging models still have to process.

    The per-file audit model stg_event_loads is written last in the staging layer, so a file
    listed there has been fully processed by stg_events and stg_events_rejected. Files loaded
    since then (or processed by a run that stopped half-way) are pending. Re-processing a
    file is harmless: both staging models skip rows they already hold.

    The audit model is looked up by name, not with ref(): it depends on the staging models, so
    a ref() here would be a cycle. It is built in the target schema, with every staging model but the
    private ones. `incremental` says whether the caller adds to what it holds (default: is_incremental());
    when it does not, every loaded file is pending for it. `as_list`: when executing, the ids as a list
    rather than as SQL. -#}
{% macro pending_load_ids(audit=none, incremental=none, as_list=false) -%}
    {#- When a run or build executes the model: the ids as a literal list. PostgreSQL cannot push a
        semi-join on a subquery into the base_event_lines view, so with the subquery it split and
        checked every landed line once per pending file (measured: 19 min for a 14-file delivery of
        240,000 lines; seconds with the list). Compiling (docs, lint, offline Redshift) keeps the query,
        and looks nothing up in the warehouse. -#}
    {%- set executing = executes_with_literal_lists(source('raw', 'event_files')) -%}
    {%- set audited_files = none -%}
    {%- if (is_incremental() if incremental is none else incremental) -%}
        {#- The audit model itself passes `this` (it exists when incremental): no lookup. -#}
        {%- set audited_files = audit if audit is not none
            else adapter.get_relation(database=target.database, schema=target.schema, identifier='stg_event_loads')
                if executing
            else api.Relation.create(database=target.database, schema=target.schema, identifier='stg_event_loads') -%}
    {%- endif -%}
    {%- set pending_query -%}
        select load_id
        from {{ source('raw', 'event_files') }}
        where status = 'loaded'
        {%- if audited_files is not none %}
            and load_id not in (select audited.load_id from {{ audited_files }} as audited)
        {%- endif %}
    {%- endset -%}
    {%- if executing -%}
        {%- set load_ids = load_ids_of(pending_query) -%}
        {{ return(load_ids if as_list else literal_id_list(load_ids)) }}
    {%- endif -%}
    {{ return(pending_query) }}
{%- endmacro %}


{#- Whether the calling model is executing in a run or build, where its load ids are looked up and
    written as literal lists; not when compiling (docs, lint, offline Redshift), nor in a dbt unit test,
    whose inputs (`relation`, one of them) are CTEs of the test's rows: the queries stay. -#}
{% macro executes_with_literal_lists(relation) -%}
    {{ return(execute and flags.WHICH in ('run', 'build')
              and not (relation | string).startswith('__dbt__cte__')) }}
{%- endmacro %}


{#- The loads landed after the newest one an incremental model was built from (its largest
    last_load_id), as the SQL of an IN list. When the model executes in a run or build: literal ids,
    the warehouse then plans the read of the new events for what they are, a few loads (the day's
    int_sessions on two months of history: its query 1.3-1.9 s with `load_id > (subquery)`, 0.75 s with
    the list). The query otherwise. -#}
{% macro loads_since_built(relation) -%}
    {%- set query -%}
        select landed.load_id
        from {{ source('raw', 'event_files') }} as landed
        where landed.load_id > (select coalesce(max(known.last_load_id), 0) from {{ relation }} as known)
    {%- endset -%}
    {%- if executes_with_literal_lists(relation) -%}
        {{ return(literal_id_list(load_ids_of(query))) }}
    {%- endif -%}
    {{ return(query) }}
{%- endmacro %}


{#- The load ids a query returns (its first column), as a list of integers. -#}
{% macro load_ids_of(query) -%}
    {{ return(run_query(query).columns[0].values() | map('int') | list) }}
{%- endmacro %}


{#- Load ids as the SQL of an IN list. None: NULL, which no load_id equals (with the query instead,
    PostgreSQL would check every landed line to find none: 27 s of a daily build on the demo). -#}
{% macro literal_id_list(ids) -%}
    {{ return(ids | join(', ') if ids else 'null') }}
{%- endmacro %}


{#- The columns of a pending line that the staging models read: the view's, less the field count, with
    the raw text of rejected lines only (a valid line is carried by its fields). -#}
{% macro pending_line_columns() -%}
    load_id,
    line_number,
    source_file,
    loaded_at,
    case when reject_reason is not null then line end as line,
    event_time_text,
    event_type,
    product_id_text,
    category_id_text,
    category_code_text,
    brand_text,
    price_text,
    user_id_text,
    user_session,
    reject_reason
{%- endmacro %}


{#- The pending lines a staging model reads (a subquery, to alias): from base_pending_event_lines for
    the files it holds, when this invocation built it (so it is current: it is upstream of the caller),
    and from the base_event_lines view for any other pending file (a caller that is rebuilt from
    scratch while the audit exists, or a selection without the table). Both refs are always taken, so
    the table is built before its readers. -#}
{% macro pending_event_lines() -%}
    {%- set parsed = ref('base_pending_event_lines') -%}
    {%- set view = ref('base_event_lines') -%}
    {%- set parsed_id = 'model.' ~ project_name ~ '.base_pending_event_lines' -%}
    {%- if executes_with_literal_lists(parsed) -%}
        {%- set built_now = parsed_id in selected_resources
            and adapter.get_relation(parsed.database, parsed.schema, parsed.identifier) is not none -%}
        {%- set covered = load_ids_of('select distinct load_id from ' ~ parsed)
            if built_now else [] -%}
        {%- set pending_ids = pending_load_ids(as_list=true) -%}
        (
            select * from {{ parsed }}
            where load_id in ({{ literal_id_list(pending_ids | select('in', covered) | list) }})
            union all
            select {{ pending_line_columns() }} from {{ view }}
            where load_id in ({{ literal_id_list(pending_ids | reject('in', covered) | list) }})
        )
    {%- else -%}
        {%- set pending = pending_load_ids() -%}
        {#- Compiling, and dbt unit tests (whose inputs are CTEs): the same, as queries. -#}
        (
            select * from {{ parsed }}
            where load_id in ({{ pending }})
            union all
            select {{ pending_line_columns() }} from {{ view }}
            where load_id in ({{ pending }}) and load_id not in (select covered.load_id from {{ parsed }} as covered)
        )
    {%- endif -%}
{%- endmacro %}


{#- on-run-end: the working copy of the pending lines is emptied (docs/gdpr.md): between runs no line
    is stored outside the raw layer. The catalog is asked afresh: dbt's cache may list a table whose
    creation a failed model rolled back. -#}
{% macro empty_pending_event_lines() -%}
    {%- if execute -%}
        {%- set node = graph.nodes.get('model.' ~ project_name ~ '.base_pending_event_lines') -%}
        {%- if node -%}
            {%- set found = run_query(
                "select count(*) from information_schema.tables where table_schema = '" ~ node.schema
                ~ "' and table_name = '" ~ node.alias ~ "'").columns[0].values()[0] -%}
            {%- if found -%}
                {{ run_and_commit(['delete from ' ~ api.Relation.create(database=node.database, schema=node.schema,
                                                                          identifier=node.alias)]) }}
            {%- endif -%}
        {%- endif -%}
    {%- endif %}
    select 1
{%- endmacro %}
