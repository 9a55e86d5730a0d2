{#- One row per shopper: their segment under the current model, or the status
    `not_enough_history` while they have fewer than min_events events (the current model's), or
    while no model could be fitted (too few eligible shoppers).
    Incremental: a run scores the shoppers whose features were recomputed since the previous one
    (everyone for a new model version: segment_rescoring_cutoff) and writes only the rows whose result
    changed, so scored_at says when a shopper's segment was last (re)assigned and a run with no new
    data changes nothing. -#}
-- depends_on: {{ segment_model_relation() }}
{{ config(
    materialized='incremental',
    unique_key='user_id',
    incremental_strategy='delete+insert',
    on_schema_change='fail'
) }}

{%- set model = current_segment_model() %}
{%- set model_version = model.version if model is not none else 0 %}
{#- A shopper is scored from the min_events the current version was fitted with, so the fit and the
    scoring never disagree; a different var takes effect with the next version (--retrain). -#}
{%- if model is not none and model.min_events != var('min_events') | int %}
    {{ exceptions.warn(
        "user_segments: scoring with min_events = " ~ model.min_events ~ ", the value model version "
        ~ model.version ~ " was fitted with; the min_events var (" ~ var('min_events')
        ~ ") applies from the next version: run with --retrain to fit one."
    ) }}
{%- endif %}
{%- set rescoring_cutoff = segment_rescoring_cutoff(model) %}
{#- The shoppers this run scores (every one, or those recomputed since the cutoff), read by the scoring
    and by the results alike. -#}
{%- set shoppers -%}
    {%- if rescoring_cutoff -%}
        (select * from {{ ref('user_features') }} where computed_at >= {{ rescoring_cutoff }}) as shoppers
    {%- else -%}
        {{ ref('user_features') }} as shoppers
    {%- endif -%}
{%- endset %}

with scores as (
    {{ segment_scores(model, shoppers) | indent(4) }}
),

current_labels as (
    select
        segment_id,
        segment_name
    from {{ ref('segment_labels') }}
    where model_version = {{ model_version }}
),

results as (
    select
        shoppers.user_id,
        -- Cast to the contract's varchar: PostgreSQL types a bare literal and type_string() as `text`, which
        -- the incremental schema check sees as a change from the table's `character varying`.
        cast(
            case when scores.user_id is null then 'not_enough_history' else 'scored' end as varchar
        ) as segment_status,
        cast(scores.segment_id as integer) as segment_id,
        cast(coalesce(current_labels.segment_name, 'Not enough history') as varchar) as segment_name,
        cast(scores.distance_to_centroid as {{ type_double() }}) as distance_to_centroid,
        cast({{ model_version }} as integer) as model_version
    from {{ shoppers }}
    left join scores on shoppers.user_id = scores.user_id
    left join current_labels on scores.segment_id = current_labels.segment_id
)

select
    results.*,
    cast({{ dbt.current_timestamp() }} as {{ dbt.type_timestamp() }}) as scored_at
from results
{% if is_incremental() %}
    where
        not exists (
            select 1
            from {{ this }} as previous
            where
                previous.user_id = results.user_id
                and previous.model_version = results.model_version
                and previous.segment_status = results.segment_status
                and coalesce(previous.segment_id, 0) = coalesce(results.segment_id, 0)
                and coalesce(previous.distance_to_centroid, -1) = coalesce(results.distance_to_centroid, -1)
        )
{% endif %}
