{#- How far the shoppers have moved from the current model version's training data: one row per
    run and measure (docs/model.md, "Drift"). Every run appends its rows:
    - feature_psi: per model feature, the PSI of the eligible shoppers' distribution over the
      training bins (the `drift` rows of segment_model) against the training shares;
    - segment_share: per segment, its share of scored shoppers now, at training, at the previous run;
    - segment_mix_psi: the PSI of the segment shares now against training;
    - shopper_flow: scored shoppers, newly scored, changed segment and left since the previous run
      (from the assignment history, user_segment_history);
    - verdict: the run's verdict from the largest PSI (the rule is in verdict_rule).
    Nothing is written while no model version is fitted, nor by a run with nothing new. -#}
-- depends_on: {{ segment_model_relation() }}
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail') }}

{%- set model = current_segment_model() %}
{%- set model_version = model.version if model is not none else 0 %}
{%- set features = model.features if model is not none else [] %}
{%- set edges = drift_bin_edges(model) %}
{%- set drifting = var('drift_psi_drifting') | float %}
{%- set retrain = var('drift_psi_retrain') | float %}
{#- Shares are floored before the logarithm, so an empty bin counts as a large move, not an infinite one. -#}
{%- set share_floor = 0.0001 %}
{%- set psi_status -%}
    case
        when psi >= {{ retrain }} then 'retrain recommended'
        when psi >= {{ drifting }} then 'drifting'
        else 'stable'
    end
{%- endset %}

-- The training share of each bin (its edges are read with the model: drift_bin_edges).
with training_bins as (
    select
        feature_name,
        component as bin_number,
        value as training_share
    from {{ segment_model_relation() }}
    where param_group = 'drift' and param_name = 'training_share' and model_version = {{ model_version }}
),

eligible as (
    select *
    from {{ ref('user_features') }}
    where events >= {{ model.min_events if model is not none else 0 }}
),

-- One pass over the eligible shoppers: per model feature, the missing values and the values above
-- each training edge (edges read with the model, drift_bin_edges). Bin 0 holds missing values; bin
-- b >= 1 the values above b - 1 edges (drift.py), so its count is the difference of two of these.
edge_counts as (
    select
        count(*) as shoppers
        {%- for feature in features %}
            {%- set feature_number = loop.index %}
            , {{ count_where(feature ~ ' is null') }} as missing_{{ feature_number }}
            {%- for edge in edges.get(feature, []) %}
                {%- set edge_literal = "cast('" ~ edge ~ "' as " ~ type_double() ~ ")" %}
                , {{ count_where('cast(' ~ feature ~ ' as ' ~ type_double() ~ ') > ' ~ edge_literal) }}
                    as above_{{ feature_number }}_{{ loop.index }}
            {%- endfor %}
        {%- endfor %}
    from eligible
),

current_shares as (
    {%- for feature in features %}
        {%- set feature_number = loop.index %}
        {%- set edge_count = edges.get(feature, []) | length %}
        select
            cast('{{ feature }}' as {{ dbt.type_string() }}) as feature_name,
            0 as bin_number,
            missing_{{ feature_number }} as shoppers
        from edge_counts
        {%- for bin_number in range(1, edge_count + 2) %}
            union all
            select
                cast('{{ feature }}' as {{ dbt.type_string() }}) as feature_name,
                {{ bin_number }} as bin_number,
                {{ 'shoppers - missing_' ~ feature_number if bin_number == 1
                   else 'above_' ~ feature_number ~ '_' ~ (bin_number - 1) }}
                - {{ 'above_' ~ feature_number ~ '_' ~ bin_number if bin_number <= edge_count else '0' }}
                    as shoppers
            from edge_counts
        {%- endfor %}
        {%- if not loop.last %}
            union all
        {%- endif %}
    {%- else %}
        select
            cast(null as {{ dbt.type_string() }}) as feature_name,
            0 as bin_number,
            shoppers
        from edge_counts
        where 1 = 0
    {%- endfor %}
),

totals as (
    select shoppers
    from edge_counts
),

bin_shares as (
    select
        training_bins.feature_name,
        greatest(training_bins.training_share, {{ share_floor }}) as training_share,
        greatest(coalesce(1.0 * current_shares.shoppers, 0) / nullif(totals.shoppers, 0), {{ share_floor }})
            as current_share
    from training_bins
    cross join totals
    left join current_shares
        on
            training_bins.feature_name = current_shares.feature_name
            and training_bins.bin_number = current_shares.bin_number
),

feature_psi as (
    select
        feature_name,
        sum((current_share - training_share) * ln(current_share / training_share)) as psi
    from bin_shares
    group by feature_name
),

training_segments as (
    select
        segment_id,
        value / sum(value) over () as training_share
    from {{ segment_model_relation() }}
    where
        param_group = 'metric' and param_name = 'segment_size'
        and model_version = {{ model_version }}
),

scored as (
    select
        segment_id,
        count(*) as shoppers
    from {{ ref('user_segments') }}
    where segment_status = 'scored' and model_version = {{ model_version }}
    group by segment_id
),

segment_shares as (
    select
        training_segments.segment_id,
        training_segments.training_share,
        coalesce(1.0 * scored.shoppers, 0) / nullif(sum(scored.shoppers) over (), 0) as current_share
    from training_segments
    left join scored on training_segments.segment_id = scored.segment_id
),

segment_mix as (
    select
        sum(
            (greatest(coalesce(current_share, 0), {{ share_floor }}) - greatest(training_share, {{ share_floor }}))
            * ln(greatest(coalesce(current_share, 0), {{ share_floor }}) / greatest(training_share, {{ share_floor }}))
        ) as psi
    from segment_shares
    having count(*) > 0
),

{% if is_incremental() %}
    previous_run as (
        select *
        from {{ this }}
        where run_started_at = (select max(latest.run_started_at) from {{ this }} as latest)
    ),
{% else %}
    previous_run as (
        select
            cast(null as {{ dbt.type_string() }}) as measure_type,
            cast(null as {{ dbt.type_string() }}) as measure_name,
            cast(null as integer) as segment_id,
            cast(null as {{ type_double() }}) as current_value,
            cast(null as {{ dbt.type_timestamp() }}) as history_as_of
        where 1 = 0
    ),
{% endif %}

-- The assignment history since the previous run: each shopper's rows with the assignment before them.
history as (
    select
        user_id,
        segment_status,
        segment_id,
        dbt_valid_from,
        dbt_valid_to,
        lag(segment_status) over (partition by user_id order by dbt_valid_from) as previous_status,
        lag(segment_id) over (partition by user_id order by dbt_valid_from) as previous_segment_id
    from {{ ref('user_segment_history') }}
),

since_previous_run as (
    select *
    from history
    where
        dbt_valid_to is null
        and dbt_valid_from > coalesce(
            (select max(previous_run.history_as_of) from previous_run),
            cast('1900-01-01' as {{ dbt.type_timestamp() }})
        )
),

shopper_flow as (
    select
        'scored' as measure_name,
        cast(count(*) as {{ type_double() }}) as current_value
    from {{ ref('user_segments') }}
    where segment_status = 'scored'
    union all
    select
        'newly_scored' as measure_name,
        cast(count(*) as {{ type_double() }}) as current_value
    from since_previous_run
    where segment_status = 'scored' and coalesce(previous_status, 'none') != 'scored'
    union all
    select
        'changed_segment' as measure_name,
        cast(count(*) as {{ type_double() }}) as current_value
    from since_previous_run
    where segment_status = 'scored' and previous_status = 'scored' and segment_id != previous_segment_id
),

flows as (
    select
        measure_name,
        current_value
    from shopper_flow
    union all
    -- Scored at the previous run and not now (erased, expired, or below min_events again).
    select
        'left' as measure_name,
        coalesce(max(previous_run.current_value), 0)
        + max(case when shopper_flow.measure_name = 'newly_scored' then shopper_flow.current_value end)
        - max(case when shopper_flow.measure_name = 'scored' then shopper_flow.current_value end) as current_value
    from shopper_flow
    left join previous_run
        on
            previous_run.measure_type = 'shopper_flow'
            and previous_run.measure_name = 'scored'
            and shopper_flow.measure_name = 'scored'
),

measures as (
    select
        'feature_psi' as measure_type,
        feature_name as measure_name,
        cast(null as integer) as segment_id,
        psi as current_value,
        cast(null as {{ type_double() }}) as training_value,
        psi
    from feature_psi
    union all
    select
        'segment_share' as measure_type,
        cast(segment_id as {{ dbt.type_string() }}) as measure_name,
        segment_id,
        current_share as current_value,
        training_share as training_value,
        cast(null as {{ type_double() }}) as psi
    from segment_shares
    union all
    select
        'segment_mix_psi' as measure_type,
        'segment_shares' as measure_name,
        cast(null as integer) as segment_id,
        psi as current_value,
        cast(null as {{ type_double() }}) as training_value,
        psi
    from segment_mix
    union all
    select
        'shopper_flow' as measure_type,
        measure_name,
        cast(null as integer) as segment_id,
        current_value,
        cast(null as {{ type_double() }}) as training_value,
        cast(null as {{ type_double() }}) as psi
    from flows
    where {{ model_version }} > 0
),

worst as (
    select max(psi) as psi
    from measures
    having count(psi) > 0
),

all_measures as (
    select
        measures.*,
        case when measures.psi is null then 'info' else {{ psi_status | replace('psi', 'measures.psi') }} end
            as measure_status
    from measures
    union all
    select
        'verdict' as measure_type,
        {{ psi_status }} as measure_name,
        cast(null as integer) as segment_id,
        psi as current_value,
        cast(null as {{ type_double() }}) as training_value,
        psi,
        {{ psi_status }} as measure_status
    from worst
)

select
    cast('{{ invocation_id }}' as {{ dbt.type_string() }}) as run_id,
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}' as {{ dbt.type_timestamp() }}) as run_started_at,
    cast({{ model_version }} as integer) as model_version,
    cast(all_measures.measure_type as {{ dbt.type_string() }}) as measure_type,
    cast(all_measures.measure_name as {{ dbt.type_string() }}) as measure_name,
    cast(all_measures.segment_id as integer) as segment_id,
    cast(all_measures.current_value as {{ type_double() }}) as current_value,
    cast(all_measures.training_value as {{ type_double() }}) as training_value,
    cast(previous_run.current_value as {{ type_double() }}) as previous_value,
    cast(all_measures.psi as {{ type_double() }}) as psi,
    cast(all_measures.measure_status as {{ dbt.type_string() }}) as measure_status,
    cast((select {{ psi_status }} from worst) as {{ dbt.type_string() }}) as verdict,
    cast(
        'largest PSI over the features and the segment mix: >= {{ retrain }} retrain recommended, '
        || '>= {{ drifting }} drifting, else stable' as {{ dbt.type_string() }}
    ) as verdict_rule,
    cast((select max(history.dbt_valid_from) from history) as {{ dbt.type_timestamp() }}) as history_as_of,
    cast((select max(features.last_load_id) from {{ ref('user_features') }} as features) as integer)
        as data_as_of_load_id
from all_measures
left join previous_run
    on
        all_measures.measure_type = previous_run.measure_type
        and all_measures.measure_name = previous_run.measure_name
-- noqa: disable=LT02
{% if is_incremental() %}
    -- A run with nothing new (same model version, no new load, no new assignment) appends nothing,
    -- so running the main job again changes no row.
    where not exists (
        select 1
        from previous_run as same
        where
            same.model_version = {{ model_version }}
            and coalesce(same.data_as_of_load_id, -1) = coalesce(
                (select max(features.last_load_id) from {{ ref('user_features') }} as features), -1
            )
            and coalesce(same.history_as_of, cast('1900-01-01' as {{ dbt.type_timestamp() }})) = coalesce(
                (select max(history.dbt_valid_from) from history), cast('1900-01-01' as {{ dbt.type_timestamp() }})
            )
    )
{% endif %}
-- noqa: enable=LT02
