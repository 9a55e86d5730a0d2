{#- GDPR by design (docs/gdpr.md): the privacy schema, erasure and pseudonymisation.

    The privacy schema belongs to the privacy team, not to the analytics project: it holds the
    erasure requests (the suppression list that keeps an erased shopper out of files that arrive
    later) and the pseudonymisation key. BI roles get no grant on it. -#}

{% macro privacy_schema() -%}
    {{ return(env_var('SEGMENTS_PRIVACY_SCHEMA', 'privacy')) }}
{%- endmacro %}


{#- Where the privacy schema lives. On DuckDB it is a separate database file, attached as
    `privacy_store` (profiles/profiles.yml) and readable by its owner only: the warehouse file analysts
    open holds neither the key nor the suppression list. Elsewhere it is a schema of the warehouse
    with no grant to analysts or BI (docs/deployment.md). -#}
{% macro privacy_location() -%}
    {{ return(adapter.dispatch('privacy_location', 'shopper_segments')()) }}
{%- endmacro %}

{% macro default__privacy_location() -%}
    {{ return(privacy_schema()) }}
{%- endmacro %}

{% macro duckdb__privacy_location() -%}
    {{ return('privacy_store.' ~ privacy_schema()) }}
{%- endmacro %}


{#- on-run-start: the privacy tables exist before any model reads them (idempotent). -#}
{% macro create_privacy_tables() -%}
    create schema if not exists {{ privacy_location() }};
    create table if not exists {{ privacy_location() }}.erasure_requests (
        request_id varchar(64) not null,
        user_id {{ dbt.type_bigint() }} not null,
        requested_at {{ dbt.type_timestamp() }} not null
    );
    create table if not exists {{ privacy_location() }}.pseudonymisation_key (
        key_value varchar(256) not null,
        key_fingerprint varchar(64) not null,
        set_at {{ dbt.type_timestamp() }} not null
    );
    create table if not exists {{ privacy_location() }}.warehouse_settings (
        pseudonymise_user_ids boolean not null,
        recorded_at {{ dbt.type_timestamp() }} not null
    )
{%- endmacro %}


{#- on-run-start (and `segments run` before it lands anything): the privacy settings are a property
    of the warehouse. The first run records `pseudonymise_user_ids`; a later run with another value
    would mix raw ids and pseudonyms in the same tables and split every shopper in two: it is refused
    before anything is written. (The key's fingerprint is checked by `segments run`, docs/gdpr.md.) -#}
{% macro enforce_privacy_settings() -%}
    {%- if execute -%}
        {%- set wanted = true if var('pseudonymise_user_ids') else false -%}
        {%- set stored = run_query(
            "select pseudonymise_user_ids from " ~ privacy_location() ~ ".warehouse_settings"
        ).rows -%}
        {%- if stored | length == 0 -%}
            {{ run_and_commit([
                "insert into " ~ privacy_location() ~ ".warehouse_settings values ("
                ~ wanted ~ ", cast(" ~ dbt.current_timestamp() ~ " as " ~ dbt.type_timestamp() ~ "))"
            ]) }}
        {%- elif (true if stored[0][0] else false) != wanted -%}
            {{ exceptions.raise_compiler_error(
                "This warehouse was built with pseudonymise_user_ids: " ~ (stored[0][0] | string | lower)
                ~ " and this run sets it to " ~ (wanted | string | lower) ~ ". The privacy settings are fixed at "
                ~ "the warehouse's first run (mixing raw ids and pseudonyms would leak ids and split shoppers): "
                ~ "run again with --vars '{pseudonymise_user_ids: " ~ (stored[0][0] | string | lower)
                ~ "}'. Nothing was written (docs/gdpr.md)."
            ) }}
        {%- endif -%}
    {%- endif -%}
    select 1
{%- endmacro %}


{#- `dbt run-operation prepare_privacy`: what `segments run` checks before it lands anything. -#}
{% macro prepare_privacy() -%}
    {{ ensure_privacy_tables() }}
    {{ enforce_privacy_settings() }}
{%- endmacro %}


{#- The shoppers who asked to be erased (as raw user ids). -#}
{% macro erased_user_ids() -%}
    select erasures.user_id from {{ source('privacy', 'erasure_requests') }} as erasures
{%- endmacro %}


{#- Pre-hook of every table holding shopper rows: remove the rows of erased shoppers already in
    it. New rows are filtered upstream (staging), so after one build they are gone everywhere. -#}
{% macro purge_erased_users(column='user_id') -%}
    {%- if execute and adapter.get_relation(this.database, this.schema, this.identifier) is not none -%}
        delete from {{ this }}
        where {{ column }} in ({{ erased_user_ids_as(column) }})
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}


{#- Pre-hook of tables holding landed lines as text: remove the lines of erased shoppers. -#}
{% macro purge_erased_lines(line_column) -%}
    {%- if execute and adapter.get_relation(this.database, this.schema, this.identifier) is not none -%}
        delete from {{ this }}
        where {{ line_column }} is not null and {{ is_line_of_erased_shopper(line_column) }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}


{#- The erased ids in the form `column` holds: canonical text for raw fields (compare them with
    canonical_user_id(...)), the (pseudonymised) id otherwise. -#}
{% macro erased_user_ids_as(column) -%}
    {%- if column.endswith('_text') or column == 'user_field' -%}
        select distinct cast(erasures.user_id as {{ dbt.type_string() }}) as user_id
        from {{ source('privacy', 'erasure_requests') }} as erasures
    {%- else -%}
        select distinct {{ shopper_id("cast(erasures.user_id as " ~ dbt.type_string() ~ ")") }} as user_id
        from {{ source('privacy', 'erasure_requests') }} as erasures
    {%- endif -%}
{%- endmacro %}


{#- The canonical text of a user id that passed the user-id rule ([0-9]{1,19} fitting a BIGINT):
    its value without leading zeros, so that `0501896843` is the shopper 501896843 everywhere —
    in the erasure filters and in the pseudonym. -#}
{% macro canonical_user_id(user_id_text) -%}
    coalesce(nullif(ltrim({{ user_id_text }}, '0'), ''), '0')
{%- endmacro %}


{#- The digit runs of a text, each without leading zeros, between commas: ',2019,10,1,...,501896843,'.
    A malformed line's user id is found there whatever surrounds it (spaces, quotes, a shifted field). -#}
{% macro digit_tokens(text) -%}
    {{ regex_replace_all("',' || " ~ text ~ " || ','", '[^0-9]+0*', ',') }}
{%- endmacro %}


{#- Whether a landed line (text) belongs to an erased shopper (docs/gdpr.md, "Erasure"):
    - a line with nine fields whose 8th field is a digit string (every valid line, most rejected
      ones): that field's canonical value is an erased id;
    - any other line (wrong field count, a user field with spaces or letters...): one of its digit
      runs, leading zeros aside, is an erased id. This errs on the side of erasure: a malformed line
      whose product id equals an erased id goes too; a valid line is only ever matched by its user id. -#}
{% macro is_line_of_erased_shopper(line) -%}
    (
        case
            when {{ field_count(line) }} = 9 and {{ regex_full_match(raw_field(line, 8), '[0-9]{1,19}') }}
                then {{ canonical_user_id(raw_field(line, 8)) }} in ({{ erased_user_ids_as('user_id_text') }})
            else exists (
                select 1
                from {{ source('privacy', 'erasure_requests') }} as erasures
                where {{ digit_tokens(line) }} like '%,' || cast(erasures.user_id as {{ dbt.type_string() }}) || ',%'
            )
        end
    )
{%- endmacro %}


{#- The shopper id every table downstream of staging carries, from the raw user id text:
    the id itself, or — with `pseudonymise_user_ids` — a keyed hash of it: the first 60 bits of
    SHA-256(key || ':' || user id) as a BIGINT (stable for a key, different across keys, no
    collision in practice below billions of shoppers). The key is read from the privacy schema,
    never written in SQL text or logs (`segments run` stores it from SEGMENTS_PSEUDONYMISATION_KEY). -#}
{% macro shopper_id(user_id_text) -%}
    {%- if var('pseudonymise_user_ids') -%}
        {{ hex_prefix_to_bigint(sha256_hex(
            "(select pseudonymisation_key.key_value from " ~ source('privacy', 'pseudonymisation_key')
            ~ " as pseudonymisation_key) || ':' || " ~ user_id_text
        ), 15) }}
    {%- else -%}
        cast({{ user_id_text }} as {{ dbt.type_bigint() }})
    {%- endif -%}
{%- endmacro %}


{#- Lower-case hexadecimal SHA-256 of a text expression. -#}
{% macro sha256_hex(text) -%}
    {{ return(adapter.dispatch('sha256_hex', 'shopper_segments')(text)) }}
{%- endmacro %}

{% macro default__sha256_hex(text) -%}
    encode(sha256(convert_to({{ text }}, 'UTF8')), 'hex')
{%- endmacro %}

{% macro duckdb__sha256_hex(text) -%}
    sha256({{ text }})
{%- endmacro %}

{% macro redshift__sha256_hex(text) -%}
    sha2({{ text }}, 256)
{%- endmacro %}


{#- The first `digits` (at most 15) hexadecimal digits of a text as a BIGINT. -#}
{% macro hex_prefix_to_bigint(hex_text, digits) -%}
    {{ return(adapter.dispatch('hex_prefix_to_bigint', 'shopper_segments')(hex_text, digits)) }}
{%- endmacro %}

{% macro default__hex_prefix_to_bigint(hex_text, digits) -%}
    cast(cast(('x' || lpad(substring({{ hex_text }}, 1, {{ digits }}), 16, '0')) as bit(64)) as bigint)
{%- endmacro %}

{% macro duckdb__hex_prefix_to_bigint(hex_text, digits) -%}
    cast(('0x' || substring({{ hex_text }}, 1, {{ digits }})) as bigint)
{%- endmacro %}

{% macro redshift__hex_prefix_to_bigint(hex_text, digits) -%}
    strtol(substring({{ hex_text }}, 1, {{ digits }}), 16)
{%- endmacro %}


{#- Pre-hook of stg_events: with pseudonymisation on, refuse to run without a key. -#}
{% macro require_pseudonymisation_key() -%}
    {%- if execute and var('pseudonymise_user_ids') -%}
        {%- set keys = run_query("select count(*) from " ~ source('privacy', 'pseudonymisation_key')) -%}
        {%- if keys.rows[0][0] != 1 -%}
            {{ exceptions.raise_compiler_error(
                "pseudonymise_user_ids is on but the privacy schema holds no key: set "
                ~ "SEGMENTS_PSEUDONYMISATION_KEY and run `segments run` (docs/gdpr.md)."
            ) }}
        {%- endif -%}
    {%- endif -%}
    select 1
{%- endmacro %}



{#- Run statements and commit them, so what a hook or run-operation creates persists. DuckDB keeps
    run_query's statements in the open transaction dbt tracks (rolled back unless committed);
    PostgreSQL and Redshift leave none open to dbt, so the commit is sent as SQL there. -#}
{% macro run_and_commit(statements) -%}
    {%- if execute -%}
        {%- for statement in statements if statement.strip() -%}
            {%- do run_query(statement) -%}
        {%- endfor -%}
        {{ adapter.dispatch('commit_open_transaction', 'shopper_segments')() }}
    {%- endif -%}
{%- endmacro %}

{% macro default__commit_open_transaction() -%}
    {%- do run_query('commit') -%}
{%- endmacro %}

{% macro duckdb__commit_open_transaction() -%}
    {%- do adapter.commit() -%}
{%- endmacro %}


{#- The session id downstream of staging: the site's session id, or — with `pseudonymise_user_ids` —
    a keyed hash of it (hex), so that no raw session id reaches the tables analysts read. -#}
{% macro session_id(user_session_text) -%}
    {%- if var('pseudonymise_user_ids') -%}
        {{ sha256_hex(
            "(select pseudonymisation_key.key_value from " ~ source('privacy', 'pseudonymisation_key')
            ~ " as pseudonymisation_key) || ':session:' || " ~ user_session_text
        ) }}
    {%- else -%}
        {{ user_session_text }}
    {%- endif -%}
{%- endmacro %}


{#- Retention: events before this time (the newest event minus `retention_days`) are purged from the
    stored events and leave every feature. Relative to the data's own clock, so that a replayed
    historical dataset behaves as production does. -#}
{% macro retention_cutoff(events=none) -%}
    {{ dbt.dateadd('day', -1 * var('retention_days'), data_end(events)) }}
{%- endmacro %}


{#- Post-hook of the tables keyed by time: drop what the retention window no longer covers. -#}
{% macro purge_expired(time_column, events=none) -%}
    delete from {{ this }}
    where {{ time_column }} < {{ retention_cutoff(events) }}
{%- endmacro %}


{#- Post-hook of stg_events, the first table retention purges (the others follow the same cutoff):
    says what the purge deletes and stops the build, before anything is deleted, when it would delete
    more than `retention_max_purge_share` of the events stored before this build, unless
    `retention_allow_large_purge`. One wrong date that moves the end of the data must not wipe the
    history (docs/gdpr.md). Events of this build's files that are already outside the window are
    not history: they are purged and counted (stg_event_loads.rows_expired), never refused. -#}
{% macro guarded_purge_expired(time_column, events) -%}
    {%- if execute -%}
        {%- set cutoff = retention_cutoff(events) -%}
        {#- Counting reads every event: only when one is outside the window (a probe the warehouse answers
            from the blocks' time ranges; a day inside the window costs no count, and purges nothing). -#}
        {%- set expiring_probe = "select count(*) from (select 1 from " ~ this ~ " where " ~ time_column
                                 ~ " < " ~ cutoff ~ " limit 1) as expiring" -%}
        {%- if run_query(expiring_probe).rows[0][0] | int > 0 -%}
            {%- set stored_before = "load_id not in (" ~ pending_load_ids() ~ ")" -%}
            {%- set counts = run_query(
                "select " ~ count_where(stored_before)
                ~ ", " ~ count_where(stored_before ~ " and " ~ time_column ~ " < " ~ cutoff)
                ~ ", " ~ count_where("not " ~ stored_before ~ " and " ~ time_column ~ " < " ~ cutoff)
                ~ ", cast(" ~ cutoff ~ " as " ~ dbt.type_string() ~ "), cast(" ~ data_end(events) ~ " as " ~ dbt.type_string()
                ~ ") from " ~ this
            ).rows[0] -%}
            {%- set stored, expiring, arrived_expired = (counts[0] or 0) | int, (counts[1] or 0) | int, (counts[2] or 0) | int -%}
            {%- set share = expiring / stored if stored else 0 -%}
            {%- set summary = "Retention purges " ~ expiring ~ " of the " ~ stored ~ " events stored before this build ("
                ~ (share * 100) | round(1) ~ " %) and " ~ arrived_expired ~ " events that arrived already outside the "
                ~ "window: those before " ~ counts[3] ~ ", " ~ var('retention_days')
                ~ " days before the newest event (" ~ counts[4] ~ ")." -%}
            {%- if share > var('retention_max_purge_share') | float and not var('retention_allow_large_purge') -%}
                {{ exceptions.raise_compiler_error(
                    summary ~ " That is more than retention_max_purge_share (" ~ var('retention_max_purge_share')
                    ~ ") of the history: nothing was deleted and this build stops. Check the newest events; if the "
                    ~ "purge is intended, run again with --vars '{retention_allow_large_purge: true}' (docs/gdpr.md)."
                ) }}
            {%- endif -%}
            {{ log(summary, info=True) }}
        {%- endif -%}
    {%- endif -%}
    {{ purge_expired(time_column, events) }}
{%- endmacro %}


{#- Post-hook of stg_event_loads, the last step of staging: the landing layer forgets what the
    warehouse must not keep. Erased shoppers' landed lines go (staging has just counted those of
    the new files in rows_erased), and a file whose events have all left the retention window loses
    its rejected lines and its landed lines. Landed lines are purged where they are stored as a
    table; a view over the lake files filters them instead. Registry and audit rows stay (they
    hold no personal data). -#}
{% macro purge_landing_layer() -%}
    {%- set expired = "select audit.load_id from " ~ this ~ " as audit where audit.last_event_at < " ~ retention_cutoff() -%}
    delete from {{ ref('stg_events_rejected') }} where load_id in ({{ expired }});
    {%- set lines = source('raw', 'event_lines') -%}
    {%- set relation = adapter.get_relation(lines.database, lines.schema, lines.identifier) if execute else none -%}
    {%- if relation is not none and relation.is_table %}
    delete from {{ lines }} where load_id in ({{ expired }});
    {%- if erasure_requests_exist() %}
    delete from {{ lines }} where {{ is_line_of_erased_shopper(landed_line()) }};
    {%- endif %}
    {%- endif %}
{%- endmacro %}


{#- Whether any erasure request is recorded (the full scan of the landed lines is skipped otherwise). -#}
{% macro erasure_requests_exist() -%}
    {%- if not execute -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set found = run_query("select count(*) from " ~ source('privacy', 'erasure_requests')) -%}
    {{ return(found.rows[0][0] > 0) }}
{%- endmacro %}


{#- Pre-hook of tables keyed by shopper downstream of user_features (user_segments, ...): shoppers
    no longer in user_features (erased, or all their events expired) leave them too. -#}
{% macro purge_departed_shoppers(column='user_id') -%}
    {#- Looked up by name, not ref(): snapshots cannot declare the dependency; every model of the
        project lives in the target schema. -#}
    {%- set shoppers = adapter.get_relation(target.database, target.schema, 'user_features') if execute else none -%}
    {%- if shoppers is not none and adapter.get_relation(this.database, this.schema, this.identifier) is not none -%}
        delete from {{ this }}
        where {{ column }} not in (select shoppers.user_id from {{ shoppers }} as shoppers)
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}


{#- `dbt run-operation ensure_privacy_tables`: what `segments erase` and the key storage run first. -#}
{% macro ensure_privacy_tables() -%}
    {{ run_and_commit(create_privacy_tables().split(';')) }}
    select 1
{%- endmacro %}
