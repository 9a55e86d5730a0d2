{#- What a build's data tests read (docs/data_quality.md, "What a run tests").

    A daily run adds a day to months of history: testing every staged event and every session again
    costs the history, not the day. With SEGMENTS_DATA_TESTS=new (what a daily `segments run` sets) the
    generic tests of stg_events, stg_events_rejected, int_sessions and user_features read only the rows
    of the loads not tested yet: the staged rows of those loads, and the sessions and shoppers that
    received their events (last_load_id is a row's newest load, and load ids only grow). Staged rows
    never change once their load is staged; a session or a shopper changes when it receives events, or
    when retention drops some of them (those few rows keep their load and are tested by the next full
    run). recency_days, which moves for everyone daily, is computed when user_features is read, not
    stored. Tests that a part of the rows cannot answer read every row: a table's emptiness, and
    uniqueness over columns that do not include the load (a new row may duplicate an old one) unless
    the table names never-null columns of the key to probe with (load_scoped_probe_columns): then the
    test reads the rows that share those columns with a row of an untested load. SEGMENTS_DATA_TESTS=all (the default of any dbt command), a retraining run and
    any full refresh test every row.

    raw.tested_loads holds the ids of the loads whose rows passed: a build that staged them and built
    their sessions and shoppers (the load-scoped models and stg_event_loads succeeded) and in which
    every data test of the load-scoped tables passed adds the loads of stg_event_loads (on-run-end). A
    load whose build or tests failed is tested again by the next run. It holds load ids only, no event
    data. -#}


{#- The tables tested by load, and the column naming each row's load. -#}
{% macro load_scoped_columns() -%}
    {{ return({'stg_events': 'load_id', 'stg_events_rejected': 'load_id', 'int_sessions': 'last_load_id',
               'user_features': 'last_load_id'}) }}
{%- endmacro %}


{#- Never-null columns of a table's event identity: a uniqueness test over columns that include them
    but not the load reads, on a daily run, the rows sharing them with a row of an untested load. A
    duplicate of a new row shares them, so it is read; duplicates among tested rows were found when
    their loads were tested (a load is recorded only when every test passed). -#}
{% macro load_scoped_probe_columns() -%}
    {{ return({'stg_events': ['user_id', 'event_time'], 'int_sessions': ['user_id'], 'user_features': ['user_id']}) }}
{%- endmacro %}


{% macro tests_read_new_loads_only() -%}
    {%- set scope = env_var('SEGMENTS_DATA_TESTS', 'all') | trim | lower -%}
    {%- if scope not in ('new', 'all') -%}
        {{ exceptions.raise_compiler_error("SEGMENTS_DATA_TESTS must be `new` or `all`, not `" ~ scope ~ "`") }}
    {%- endif -%}
    {{ return(scope == 'new' and not flags.FULL_REFRESH) }}
{%- endmacro %}


{#- A table of the landing schema: the `raw` source's schema (models/staging/_staging.yml). -#}
{% macro raw_relation(name) -%}
    {{ return(api.Relation.create(database=target.database, schema=env_var('SEGMENTS_RAW_SCHEMA', 'raw'),
                                  identifier=name)) }}
{%- endmacro %}


{% macro tested_loads_relation() -%}
    {{ return(raw_relation('tested_loads')) }}
{%- endmacro %}


{#- The generic tests that read the new loads only: not those about the whole table. -#}
{% macro test_reads_new_loads_only(test_node, load_column, probe_columns=[]) -%}
    {%- set metadata = test_node.get('test_metadata') or {} -%}
    {%- set kwargs = metadata.get('kwargs') or {} -%}
    {%- if metadata.get('name') == 'not_empty' -%}
        {{ return(false) }}
    {%- elif metadata.get('name') == 'unique' -%}
        {{ return(kwargs.get('column_name') == load_column) }}
    {%- elif metadata.get('name') == 'unique_combination' -%}
        {%- set columns = kwargs.get('combination_of_columns') or [] -%}
        {{ return(load_column in columns or (probe_columns and probe_columns | reject('in', columns) | list == [])) }}
    {%- endif -%}
    {{ return(true) }}
{%- endmacro %}


{#- A uniqueness test over columns without the load (the key of the table's rows, not of its loads). -#}
{% macro is_uniqueness_without_load(test_node, load_column) -%}
    {%- set metadata = test_node.get('test_metadata') or {} -%}
    {%- set columns = (metadata.get('kwargs') or {}).get('combination_of_columns') or [] -%}
    {{ return(metadata.get('name') == 'unique_combination' and load_column not in columns) }}
{%- endmacro %}


{#- The loads no build has tested, as a literal list when the test runs (a list lets every warehouse
    skip by its load_id sort key; see pending_load_ids); `null` when there are none. -#}
{% macro untested_load_ids() -%}
    {%- set untested -%}
        select files.load_id from {{ raw_relation('event_files') }} as files
        where files.status = 'loaded'
            and files.load_id not in (select tested.load_id from {{ tested_loads_relation() }} as tested)
    {%- endset -%}
    {%- if execute -%}
        {%- set load_ids = load_ids_of(untested) -%}
        {{ return(literal_id_list(load_ids)) }}
    {%- endif -%}
    {{ return(untested) }}
{%- endmacro %}


{#- The load column this test reads the untested loads of, or none: a daily build or test run
    (SEGMENTS_DATA_TESTS=new), a load-scoped table, a test that a part of the rows answers, and
    raw.tested_loads in place. At parse time `relation` is the test itself: none, and no query. -#}
{% macro scoped_load_column(relation) -%}
    {%- set load_column = load_scoped_columns().get(relation.identifier) -%}
    {%- if not (execute and load_column and flags.WHICH in ('build', 'test')) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set probe_columns = load_scoped_probe_columns().get(relation.identifier, []) -%}
    {%- if not (tests_read_new_loads_only() and test_reads_new_loads_only(model, load_column, probe_columns)) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set tested = tested_loads_relation() -%}
    {%- if adapter.get_relation(database=tested.database, schema=tested.schema, identifier=tested.identifier) is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(load_column) }}
{%- endmacro %}


{#- dbt's own macro (a generic test reads `model` through it), overridden by the root project: the
    test's `where` config as dbt applies it, and on a daily run the rows of the untested loads. -#}
{% macro get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- do conditions.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- set load_column = scoped_load_column(relation) -%}
    {%- if load_column and is_uniqueness_without_load(model, load_column) -%}
        {#- The rows sharing the probe columns with a row of an untested load (load_scoped_probe_columns). -#}
        {%- set matches = [] -%}
        {%- for column in load_scoped_probe_columns()[relation.identifier] -%}
            {%- do matches.append('new_rows.' ~ column ~ ' = scoped_rows.' ~ column) -%}
        {%- endfor -%}
        {%- do conditions.append('exists (select 1 from ' ~ relation ~ ' as new_rows where new_rows.' ~ load_column
            ~ ' in (' ~ untested_load_ids() ~ ') and ' ~ matches | join(' and ') ~ ')') -%}
    {%- elif load_column -%}
        {%- do conditions.append(load_column ~ ' in (' ~ untested_load_ids() ~ ')') -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' as scoped_rows where ' ~ conditions | join(' and ')
                      ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}


{#- on-run-start: the table exists before any test reads it. The schema is quoted: `raw` is a reserved
    word in Redshift. -#}
{% macro ensure_tested_loads_table() -%}
    {{ run_and_commit([
        'create schema if not exists ' ~ adapter.quote(tested_loads_relation().schema),
        'create table if not exists ' ~ tested_loads_relation() ~ ' (load_id integer not null)',
    ]) }}
    select 1
{%- endmacro %}


{#- on-run-end: a build that staged the pending loads and built their sessions (the load-scoped models
    and stg_event_loads succeeded) and in which every data test of the load-scoped tables passed (a
    warning passes) records the staged loads (those with rows: not a duplicate or quarantined file). -#}
{% macro record_tested_loads(results) -%}
    {%- if execute and flags.WHICH == 'build' -%}
        {%- set scoped_models = [] -%}
        {%- for name in load_scoped_columns() -%}
            {%- do scoped_models.append('model.' ~ project_name ~ '.' ~ name) -%}
        {%- endfor -%}
        {#- The load-scoped tables and the audit, which lists the loads they hold. -#}
        {%- set staging = scoped_models + ['model.' ~ project_name ~ '.stg_event_loads'] -%}
        {%- set staged = results | selectattr('node.unique_id', 'in', staging)
                         | selectattr('status', 'equalto', 'success') | list -%}
        {%- set scoped_tests = graph.nodes.values() | selectattr('resource_type', 'equalto', 'test')
                               | selectattr('attached_node', 'in', scoped_models) | map(attribute='unique_id') | list -%}
        {%- set passed = results | selectattr('node.unique_id', 'in', scoped_tests)
                         | selectattr('status', 'in', ['pass', 'warn']) | list -%}
        {#- Looked up by name, as pending_load_ids does: a hook has no ref(). -#}
        {%- set audit = adapter.get_relation(database=target.database, schema=target.schema,
                                             identifier='stg_event_loads') -%}
        {%- if audit is not none and staged | length == staging | length
              and scoped_tests and passed | length == scoped_tests | length -%}
            {{ run_and_commit([
                'insert into ' ~ tested_loads_relation() ~ ' (load_id) select audited.load_id from '
                ~ audit ~ " as audited where audited.status = 'loaded' and audited.load_id not in"
                ~ ' (select tested.load_id from ' ~ tested_loads_relation() ~ ' as tested)',
            ]) }}
        {%- endif -%}
    {%- endif %}
    select 1
{%- endmacro %}
