{#- GDPR by design (docs/gdpr.md): the privacy schema, erasure and pseudonymisation.

    The privacy schema belongs to the privacy team, not to the analytics project: it holds the
    erasure requests (the suppression list that keeps an erased shopper out of files that arrive
    later) and the pseudonymisation key. BI roles get no grant on it. -#}

{% macro privacy_schema() -%}
    {{ return(env_var('SEGMENTS_PRIVACY_SCHEMA', 'privacy')) }}
{%- endmacro %}


{#- on-run-start: the privacy tables exist before any model reads them (idempotent). -#}
{% macro create_privacy_tables() -%}
    create schema if not exists {{ privacy_schema() }};
    create table if not exists {{ privacy_schema() }}.erasure_requests (
        request_id varchar(64) not null,
        user_id {{ dbt.type_bigint() }} not null,
        requested_at {{ dbt.type_timestamp() }} not null
    );
    create table if not exists {{ privacy_schema() }}.pseudonymisation_key (
        key_value varchar(256) not null,
        key_fingerprint varchar(64) not null,
        set_at {{ dbt.type_timestamp() }} not null
    )
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


{#- The erased ids in the form `column` holds: text for raw fields, the (pseudonymised) id otherwise. -#}
{% macro erased_user_ids_as(column) -%}
    {%- if column.endswith('_text') or column == 'user_field' -%}
        select distinct cast(erasures.user_id as {{ dbt.type_string() }}) as user_id
        from {{ source('privacy', 'erasure_requests') }} as erasures
    {%- else -%}
        select distinct {{ shopper_id("cast(erasures.user_id as " ~ dbt.type_string() ~ ")") }} as user_id
        from {{ source('privacy', 'erasure_requests') }} as erasures
    {%- endif -%}
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
    delete from {{ lines }} where {{ raw_field('line', 8) }} in ({{ erased_user_ids_as('user_id_text') }});
    {%- endif %}
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
