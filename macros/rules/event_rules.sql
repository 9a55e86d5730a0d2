{#- The rules that decide whether a raw REES46 line becomes a clean event or a rejected row.
    This file is the one place where they are written; docs/data_quality.md lists them in words. -#}

{#- The event types the REES46 format defines. -#}
{% macro event_types() -%}
    {{ return(['view', 'cart', 'remove_from_cart', 'purchase']) }}
{%- endmacro %}


{#- The format of each of the nine fields, as a regular expression matched against the whole field
    (POSIX classes only: Redshift's ~ is POSIX). Brand has no format beyond its length. -#}
{% macro event_field_patterns() -%}
    {{ return({
        'event_time': '[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]) ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9] UTC',
        'event_type': '(' ~ event_types() | join('|') ~ ')',
        'product_id': '[0-9]{1,19}',
        'category_id': '[0-9]{1,19}',
        'category_code': '[a-z0-9_]+([.][a-z0-9_]+){0,4}',
        'brand': '[^,]{0,100}',
        'price': '[0-9]{1,12}([.][0-9]{1,6})?',
        'user_id': '[0-9]{1,19}',
        'user_session': '[0-9A-Za-z-]{1,64}'
    }) }}
{%- endmacro %}


{#- A whole valid line: the nine field formats joined by commas (category code may be empty). -#}
{% macro event_line_pattern() -%}
    {%- set p = event_field_patterns() -%}
    {{ return(
        p.event_time ~ ',' ~ p.event_type ~ ',' ~ p.product_id ~ ',' ~ p.category_id ~ ',(' ~ p.category_code ~ ')?,'
        ~ p.brand ~ ',' ~ p.price ~ ',' ~ p.user_id ~ ',' ~ p.user_session
    ) }}
{%- endmacro %}


{#- Field `position` (1-based) of a raw comma-separated line. Most lines hold no double quote and are
    split on commas (the fast path). A line holding one that is a well-formed RFC 4180 line (fields
    quoted or not, "" for a quote inside a quoted field) is split quote-aware, its fields unquoted;
    any other line with a quote is split on commas, as before. -#}
{% macro raw_field(line, position) -%}
    case
        when {{ is_quoted_csv_line(line) }}
            then {{ csv_unquote(quoted_csv_field(line, position)) }}
        else {{ adapter.dispatch('raw_field', 'shopper_segments')(line, position) }}
    end
{%- endmacro %}

{% macro default__raw_field(line, position) -%}
    split_part({{ line }}, ',', {{ position }})
{%- endmacro %}

{#- DuckDB's split_part rescans the line for every field; string_split once (the optimiser shares
    the identical calls) is eight times faster. -#}
{% macro duckdb__raw_field(line, position) -%}
    string_split({{ line }}, ',')[{{ position }}]
{%- endmacro %}


{#- Number of comma-separated fields in a line; in a quoted line, commas inside quotes do not count. -#}
{% macro field_count(line) -%}
    case
        when {{ is_quoted_csv_line(line) }}
            then {{ comma_count(regex_replace_all(line, csv_quoted_field_pattern(), '')) }} + 1
        else {{ comma_count(line) }} + 1
    end
{%- endmacro %}

{% macro comma_count(text) -%}
    (length({{ text }}) - length(replace({{ text }}, ',', '')))
{%- endmacro %}


{#- RFC 4180: a quoted field ("" is a quote inside it), and any field (quoted, or unquoted without
    commas or quotes). Capturing groups only, so POSIX engines (Redshift's ~) accept them. -#}
{% macro csv_quoted_field_pattern() -%}"([^"]|"")*"{%- endmacro %}
{% macro csv_field_pattern() -%}("([^"]|"")*"|[^,"]*){%- endmacro %}


{#- A line to split quote-aware: it holds a double quote (a cheap test that settles most lines) and
    is a well-formed RFC 4180 line. CASE, not AND, so the regular expression runs on quoted lines only. -#}
{% macro is_quoted_csv_line(line) -%}
    (
        case
            when position('"' in {{ line }}) = 0 then 0
            when {{ regex_full_match(line, csv_field_pattern() ~ '(,' ~ csv_field_pattern() ~ ')*') }} then 1
            else 0
        end = 1
    )
{%- endmacro %}


{#- Field `position` of a well-formed RFC 4180 line, quotes still on: the field after position - 1
    fields and their commas. -#}
{% macro quoted_csv_field(line, position) -%}
    {%- set field = '(?:"(?:[^"]|"")*"|[^,"]*)' -%}
    {{ return(adapter.dispatch('quoted_csv_field', 'shopper_segments')(
        line, '^(?:' ~ field ~ ',){' ~ (position - 1) ~ '}(' ~ field ~ ')(?:,|$)')) }}
{%- endmacro %}

{% macro default__quoted_csv_field(line, pattern) -%}
    substring({{ line }} from '{{ pattern }}')
{%- endmacro %}

{% macro duckdb__quoted_csv_field(line, pattern) -%}
    regexp_extract({{ line }}, '{{ pattern }}', 1)
{%- endmacro %}

{#- 'p': Perl-compatible syntax, for the non-capturing groups; 'e': return the capturing group. -#}
{% macro redshift__quoted_csv_field(line, pattern) -%}
    regexp_substr({{ line }}, '{{ pattern }}', 1, 1, 'pe')
{%- endmacro %}


{#- A CSV field without its quotes: "a""b" is a"b; an unquoted field is kept as it is. -#}
{% macro csv_unquote(field) -%}
    case
        when left({{ field }}, 1) = '"'
            then replace(substring({{ field }}, 2, length({{ field }}) - 2), '""', '"')
        else {{ field }}
    end
{%- endmacro %}


{#- A digit string (already matched by its pattern) that fits in a BIGINT (up to 9223372036854775807). -#}
{% macro fits_in_bigint(digits) -%}
    (length({{ digits }}) < 19 or {{ digits }} <= '9223372036854775807')
{%- endmacro %}


{#- A time already matched by its pattern names a real calendar day (no 31 April, 29 February only
    in leap years). Days up to 28 exist in every month: a string comparison settles most lines. -#}
{% macro is_real_day(event_time_text) -%}
    {%- set year = 'cast(substring(' ~ event_time_text ~ ', 1, 4) as integer)' -%}
    (
        case
            when substring({{ event_time_text }}, 9, 2) <= '28' then 1
            when cast(substring({{ event_time_text }}, 9, 2) as integer)
                <= case cast(substring({{ event_time_text }}, 6, 2) as integer)
                    when 2 then
                        case
                            when mod({{ year }}, 400) = 0 then 29
                            when mod({{ year }}, 100) = 0 then 28
                            when mod({{ year }}, 4) = 0 then 29
                            else 28
                        end
                    when 4 then 30
                    when 6 then 30
                    when 9 then 30
                    when 11 then 30
                    else 31
                end
                then 1
            else 0
        end = 1
    )
{%- endmacro %}


{#- A well-formed event time (matched by its pattern, a real day) that the data can hold: not before
    the `event_time_floor` var (the dataset's start) and not after the file's landing time plus
    `event_time_max_days_after_load` days. An impossible time (`9999-12-31`, a clock years ahead) would
    otherwise become the end of the data and move the retention horizon past every real event.
    Compared as text: the pattern fixes the layout, so text order is time order. -#}
{% macro is_plausible_event_time(event_time_text, loaded_at) -%}
    (
        substring({{ event_time_text }}, 1, 19) >= '{{ var("event_time_floor") }}'
        and substring({{ event_time_text }}, 1, 19) <= cast(
            {{ dbt.dateadd('day', var('event_time_max_days_after_load'), loaded_at) }} as {{ dbt.type_string() }}
        )
    )
{%- endmacro %}


{#- The name of the first rule a parsed line breaks, or NULL when it is a valid event.
    Expects the text columns produced by base_event_lines: line, loaded_at, field_count, event_time_text, ...
    Almost every line is valid: one match of the whole line against event_line_pattern() settles
    those, and the rules are checked one by one only for the others (a single regular expression
    costs a tenth of the field-by-field checks). Both paths are built from event_field_patterns(),
    so they cannot disagree. -#}
{% macro event_reject_reason() -%}
    {%- set p = event_field_patterns() -%}
    {%- set rule_by_rule -%}
        case
            when coalesce(line, '') = '' then 'empty_line'
            when field_count <> 9 then 'wrong_field_count'
            when event_time_text = '' then 'missing_event_time'
            when not {{ regex_full_match('event_time_text', p.event_time) }} then 'invalid_event_time'
            when not {{ is_real_day('event_time_text') }} then 'invalid_event_time'
            when not {{ is_plausible_event_time('event_time_text', 'loaded_at') }} then 'implausible_event_time'
            when not {{ regex_full_match('event_type', p.event_type) }} then 'invalid_event_type'
            when not {{ regex_full_match('product_id_text', p.product_id) }} then 'invalid_product_id'
            when not {{ fits_in_bigint('product_id_text') }} then 'invalid_product_id'
            when not {{ regex_full_match('category_id_text', p.category_id) }} then 'invalid_category_id'
            when not {{ fits_in_bigint('category_id_text') }} then 'invalid_category_id'
            when category_code_text <> '' and not {{ regex_full_match('category_code_text', p.category_code) }}
                then 'invalid_category_code'
            when not {{ regex_full_match('brand_text', p.brand) }} then 'invalid_brand'
            when price_text = '' then 'missing_price'
            when {{ regex_full_match('price_text', '-' ~ p.price) }} then 'negative_price'
            when not {{ regex_full_match('price_text', p.price) }} then 'invalid_price'
            when user_id_text = '' then 'missing_user_id'
            when not {{ regex_full_match('user_id_text', p.user_id) }} then 'invalid_user_id'
            when not {{ fits_in_bigint('user_id_text') }} then 'invalid_user_id'
            when user_session = '' then 'missing_user_session'
            when not {{ regex_full_match('user_session', p.user_session) }} then 'invalid_user_session'
            -- A quoted line never matches the unquoted line pattern: every rule above has checked it.
            when {{ is_quoted_csv_line('line') }} then null
            -- Unreachable while the two paths agree: a loud value rather than a silently dropped line.
            else 'unclassified'
        end
    {%- endset -%}
    {#- CASE, not AND, so that the value checks only run on lines whose fields have the right format. -#}
    case
        when {{ adapter.dispatch('has_event_line_format', 'shopper_segments')() }}
            then
                case
                    when
                        {{ is_real_day('event_time_text') }}
                        and {{ is_plausible_event_time('event_time_text', 'loaded_at') }}
                        and {{ fits_in_bigint('product_id_text') }}
                        and {{ fits_in_bigint('category_id_text') }}
                        and {{ fits_in_bigint('user_id_text') }}
                        then null
                    else {{ rule_by_rule }}
                end
        else {{ rule_by_rule }}
    end
{%- endmacro %}


{#- The fast path of event_reject_reason(): every field of the line has its format. On DuckDB one
    regular expression over the whole line (RE2: a tenth of the cost of the field-by-field checks). -#}
{% macro default__has_event_line_format() -%}
    {{ regex_full_match('line', event_line_pattern()) }}
{%- endmacro %}

{#- PostgreSQL's regular expressions are slow on long patterns with bounded repeats: the whole-line
    pattern took 36 s for 235,000 lines, the nine field patterns 8 s together. The same test field by
    field (no field pattern holds a comma, so a line of nine fields matches the whole-line pattern
    exactly when each field matches its own; quoted lines are settled by the rules either way). -#}
{% macro postgres__has_event_line_format() -%}
    {%- set p = event_field_patterns() -%}
    (
        field_count = 9
        and {{ regex_full_match('event_time_text', p.event_time) }}
        and {{ regex_full_match('event_type', p.event_type) }}
        and {{ regex_full_match('product_id_text', p.product_id) }}
        and {{ regex_full_match('category_id_text', p.category_id) }}
        and (category_code_text = '' or {{ regex_full_match('category_code_text', p.category_code) }})
        and {{ regex_full_match('brand_text', p.brand) }}
        and {{ regex_full_match('price_text', p.price) }}
        and {{ regex_full_match('user_id_text', p.user_id) }}
        and {{ regex_full_match('user_session', p.user_session) }}
    )
{%- endmacro %}


{#- The reject reasons event_reject_reason() can return, for tests and documentation. -#}
{% macro event_reject_reasons() -%}
    {{ return([
        'empty_line', 'wrong_field_count', 'missing_event_time', 'invalid_event_time', 'implausible_event_time',
        'invalid_event_type',
        'invalid_product_id', 'invalid_category_id', 'invalid_category_code', 'invalid_brand',
        'missing_price', 'negative_price', 'invalid_price', 'missing_user_id', 'invalid_user_id',
        'missing_user_session', 'invalid_user_session'
    ]) }}
{%- endmacro %}


{#- The body of base_event_lines after its `lines` CTE: each line's nine fields and field count, and
    the first rule the line breaks (event_reject_reason), as columns named as the view's. -#}
{% macro split_and_check_lines(lines) -%}
    {{ return(adapter.dispatch('split_and_check_lines', 'shopper_segments')(lines)) }}
{%- endmacro %}

{#- The columns of raw.event_lines that hold a landed line's nine fields, in field order. The loader
    stores a line split into them when it splits plainly (no double quote, nine comma-separated
    fields), and NULL in `line`; any other line keeps its text in `line` and NULL fields
    (shopper_segments/ingest/files.py, LANDED_FIELD_COLUMNS: the same names). -#}
{% macro landed_field_columns() -%}
    {{ return(['event_time_text', 'event_type_text', 'product_id_text', 'category_id_text', 'category_code_text',
               'brand_text', 'price_text', 'user_id_text', 'user_session_text']) }}
{%- endmacro %}


{#- A landed line as delivered, from the columns of raw.event_lines (of `relation`, or unqualified):
    its text, or its fields joined by commas. -#}
{% macro landed_line(relation=none) -%}
    {%- set prefix = relation ~ '.' if relation else '' -%}
    {%- set fields = [] -%}
    {%- for column in landed_field_columns() -%}
        {%- do fields.append(prefix ~ column) -%}
    {%- endfor -%}
    coalesce({{ prefix }}line, {{ adapter.dispatch('join_with_commas', 'shopper_segments')(fields) }})
{%- endmacro %}

{#- Text expressions joined by commas. The loader leaves no field of a split line NULL, and a line not
    split is taken whole, so the forms below agree wherever they are used. -#}
{% macro default__join_with_commas(fields) -%}
    {{ fields | join(" || ',' || ") }}
{%- endmacro %}

{#- DuckDB builds each `||` as a new string: one concat_ws over 42 M lines costs a third as much
    (the pending lines' check of a real-shaped month: 32 s to 26 s). -#}
{% macro duckdb__join_with_commas(fields) -%}
    concat_ws(',', {{ fields | join(', ') }})
{%- endmacro %}


{#- A landed line as the loader stored it, as a select list for the `lines` CTE of base_event_lines:
    the text of a line it did not split (`unsplit_line`), or its nine fields (`landed_<column>`). -#}
{% macro landed_parts(relation) -%}
    {{ relation }}.line as unsplit_line,
    {%- for column in landed_field_columns() %}
    {{ relation }}.{{ column }} as landed_{{ column }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}


{#- The fields and their count, as a select list over the `lines` CTE of base_event_lines: the landed
    fields of a line the loader split, otherwise the fields of its text (`unsplit_line`), split
    quote-aware here. Each field is named as in base_event_lines. -#}
{% macro line_fields(lines) -%}
    {%- set names = ['event_time_text', 'event_type', 'product_id_text', 'category_id_text', 'category_code_text',
                     'brand_text', 'price_text', 'user_id_text', 'user_session'] -%}
    {%- set text = lines ~ '.unsplit_line' -%}
    case when {{ text }} is null then 9 else {{ field_count(text) }} end as field_count,
    {%- for column in landed_field_columns() %}
    case
        when {{ text }} is null then {{ lines }}.landed_{{ column }}
        else {{ raw_field(text, loop.index) }}
    end as {{ names[loop.index0] }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}

{#- DuckDB (and Redshift) share identical expressions within a query. -#}
{% macro default__split_and_check_lines(lines) -%}
    , fields as (
        select
            load_id,
            line_number,
            source_file,
            loaded_at,
            line,
            {{ line_fields(lines) }}
        from {{ lines }}
    )

    select
        *,
        {{ event_reject_reason() }} as reject_reason
    from fields
{%- endmacro %}

{#- PostgreSQL does not: it inlines the view into each query and copies a field's expression into
    every place that uses it (the reject reason uses each field several times, and stg_event_loads the
    reason several times), so each line was split dozens of times (stg_events and stg_event_loads took
    50-60 s each for 235,000 lines). A LATERAL subquery with OFFSET 0 is not inlined: each line is
    split once and checked once, and the filter on load_id still reaches the scan of the lines. -#}
{% macro postgres__split_and_check_lines(lines) -%}
    select
        {{ lines }}.load_id,
        {{ lines }}.line_number,
        {{ lines }}.source_file,
        {{ lines }}.loaded_at,
        {{ lines }}.line,
        fields.*,
        checked.reject_reason
    from {{ lines }}
    cross join lateral (
        select {{ line_fields(lines) }}
        offset 0
    ) as fields
    cross join lateral (
        select {{ event_reject_reason() }} as reject_reason
        offset 0
    ) as checked
{%- endmacro %}

{#- Redshift has no LATERAL subqueries (and would otherwise inherit the postgres__ version). -#}
{% macro redshift__split_and_check_lines(lines) -%}
    {{ default__split_and_check_lines(lines) }}
{%- endmacro %}
