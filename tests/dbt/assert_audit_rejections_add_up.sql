-- In the load audit, the rejections by rule add up to the rejected rows of each file.
select load_id
from {{ ref('stg_event_loads') }}
where
    rows_rejected
    <> {% for reason in event_reject_reasons() -%}
        rejected_{{ reason }}{{ ' + ' if not loop.last }}
    {%- endfor %}
