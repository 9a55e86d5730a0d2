{#- The rules that decide whether a raw REES46 line becomes a clean event or a rejected row.
    This file is the one place where they are written; docs/data_quality.md lists them in words. -#}

{#- The event types the REES46 format defines. -#}
{% macro event_types() -%}
    {{ return(['view', 'cart', 'remove_from_cart', 'purchase']) }}
{%- endmacro %}


{#- Field `position` (1-based) of a raw comma-separated line. REES46 never quotes fields. -#}
{% macro raw_field(line, position) -%}
    split_part({{ line }}, ',', {{ position }})
{%- endmacro %}


{#- Number of comma-separated fields in a line. -#}
{% macro field_count(line) -%}
    (length({{ line }}) - length(replace({{ line }}, ',', '')) + 1)
{%- endmacro %}


{#- A non-negative integer that fits in a BIGINT (up to 9223372036854775807). -#}
{% macro is_bigint_text(expr) -%}
    (
        {{ regex_full_match(expr, '[0-9]{1,19}') }}
        and (length({{ expr }}) < 19 or {{ expr }} <= '9223372036854775807')
    )
{%- endmacro %}


{#- `YYYY-MM-DD HH:MM:SS UTC` naming a real calendar day (no 31 April, 29 February only in leap years). -#}
{% macro is_valid_event_time(expr) -%}
    (
        {{ regex_full_match(expr, '[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]) ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9] UTC') }}
        and cast(substring({{ expr }}, 9, 2) as integer) <= case cast(substring({{ expr }}, 6, 2) as integer)
            when 2 then
                case
                    when mod(cast(substring({{ expr }}, 1, 4) as integer), 400) = 0 then 29
                    when mod(cast(substring({{ expr }}, 1, 4) as integer), 100) = 0 then 28
                    when mod(cast(substring({{ expr }}, 1, 4) as integer), 4) = 0 then 29
                    else 28
                end
            when 4 then 30
            when 6 then 30
            when 9 then 30
            when 11 then 30
            else 31
        end
    )
{%- endmacro %}


{#- The name of the first rule a parsed line breaks, or NULL when it is a valid event.
    Expects the text columns produced by base_event_lines: field_count, event_time_text, ... -#}
{% macro event_reject_reason() -%}
    case
        when coalesce(line, '') = '' then 'empty_line'
        when field_count <> 9 then 'wrong_field_count'
        when event_time_text = '' then 'missing_event_time'
        when not {{ is_valid_event_time('event_time_text') }} then 'invalid_event_time'
        when event_type not in ('{{ event_types() | join("', '") }}') then 'invalid_event_type'
        when not {{ is_bigint_text('product_id_text') }} then 'invalid_product_id'
        when not {{ is_bigint_text('category_id_text') }} then 'invalid_category_id'
        when category_code_text <> ''
            and not {{ regex_full_match('category_code_text', '[a-z0-9_]+([.][a-z0-9_]+){0,4}') }}
            then 'invalid_category_code'
        when length(brand_text) > 100 then 'invalid_brand'
        when price_text = '' then 'missing_price'
        when {{ regex_full_match('price_text', '-[0-9]{1,12}([.][0-9]{1,6})?') }} then 'negative_price'
        when not {{ regex_full_match('price_text', '[0-9]{1,12}([.][0-9]{1,6})?') }} then 'invalid_price'
        when user_id_text = '' then 'missing_user_id'
        when not {{ is_bigint_text('user_id_text') }} then 'invalid_user_id'
        when user_session = '' then 'missing_user_session'
        when not {{ regex_full_match('user_session', '[0-9A-Za-z-]{1,64}') }} then 'invalid_user_session'
    end
{%- endmacro %}


{#- The reject reasons event_reject_reason() can return, for tests and documentation. -#}
{% macro event_reject_reasons() -%}
    {{ return([
        'empty_line', 'wrong_field_count', 'missing_event_time', 'invalid_event_time', 'invalid_event_type',
        'invalid_product_id', 'invalid_category_id', 'invalid_category_code', 'invalid_brand',
        'missing_price', 'negative_price', 'invalid_price', 'missing_user_id', 'invalid_user_id',
        'missing_user_session', 'invalid_user_session'
    ]) }}
{%- endmacro %}
