-- In the load audit, the rejections by rule add up to the rejected rows of each file.
{%- set by_rule = [] %}
{%- for reason in event_reject_reasons() %}
    {%- do by_rule.append('rejected_' ~ reason) %}
{%- endfor %}
select load_id
from {{ ref('stg_event_loads') }}
where rows_rejected <> {{ by_rule | join(' + ') }}
