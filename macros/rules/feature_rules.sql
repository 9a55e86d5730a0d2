{#- Shared definitions of the behavioural features (docs: models/features/_features.yml). -#}

{#- Top-level categories that get their own share column in user_features (share_<name>).
    Events with another top-level category count in share_other_categories; events without a
    category_code in share_uncategorised. The 13 top levels of the REES46 catalogue. -#}
{% macro top_level_categories() -%}
    {{ return([
        'electronics', 'appliances', 'computers', 'apparel', 'furniture', 'kids', 'construction',
        'auto', 'sport', 'accessories', 'stationery', 'medicine', 'country_yard'
    ]) }}
{%- endmacro %}


{#- An event happened at night: its UTC hour is in [night_start_hour, night_end_hour). -#}
{% macro is_night(event_time) -%}
    (extract(hour from {{ event_time }}) >= {{ var('night_start_hour') }}
        and extract(hour from {{ event_time }}) < {{ var('night_end_hour') }})
{%- endmacro %}


{#- An event happened on a Saturday or a Sunday (day of week 0 = Sunday, 6 = Saturday everywhere). -#}
{% macro is_weekend(event_time) -%}
    (extract(dow from {{ event_time }}) in (0, 6))
{%- endmacro %}


{#- Days (fractional) from a shopper's last event to the last event in the data. -#}
{% macro recency_days(last_event_at, data_end) -%}
    ({{ seconds_between(last_event_at, data_end) }} / 86400.0)
{%- endmacro %}


{#- The end of the data: the time of the last clean event (of `events`, default stg_events; read from
    `time_column`, e.g. the shoppers' last_event_at in int_user_features, whose newest is the same time). -#}
{% macro data_end(events=none, time_column='event_time') -%}
    (select max(all_events.{{ time_column }}) from {{ events if events is not none else ref('stg_events') }} as all_events)
{%- endmacro %}
