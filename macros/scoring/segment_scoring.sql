{#- Apply the current segment model in plain SQL: impute -> log1p -> clip -> standardise ->
    project on the principal components -> nearest centroid. Every number comes from the
    parameter table (segment_model) at run time, so any warehouse scores at full scale exactly
    as scikit-learn's predict does (tests/pytest/test_pipeline.py checks it user by user). -#}

{#- The relation holding the fitted parameters: the dbt Python model on DuckDB; elsewhere (no dbt
    Python models) the table `segments fit` writes (see fitted_relation). -#}
{% macro segment_model_relation() -%}
    {{ return(fitted_relation('segment_model')) }}
{%- endmacro %}


{#- The shape of the current model version: its number, features (in order), components, segments,
    and the min_events it was fitted with (the scoring applies that one: see user_segments).
    Returns none at parse time, when no query can run, and while no version is fitted (a new
    warehouse, or too few eligible shoppers so far: everyone is then not_enough_history). -#}
{% macro current_segment_model() -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set relation = segment_model_relation() -%}
    {%- if adapter.get_relation(relation.database, relation.schema, relation.identifier) is none -%}
        {#- Compiling (linting, docs) before the first fit: nothing to read yet. -#}
        {{ return(none) }}
    {%- endif -%}
    {%- set shape_query -%}
        select
            param_group,
            param_name,
            feature_name,
            component,
            segment_id,
            value,
            model_version
        from {{ relation }}
        where
            model_version = (select max(latest.model_version) from {{ relation }} as latest)
            and (
                (param_group = 'preprocess' and param_name = 'position')
                or (param_group = 'kmeans' and param_name = 'centroid' and component = 1)
                or (param_group = 'pca' and param_name = 'loading')
                or (param_group = 'config' and param_name = 'min_events')
            )
    {%- endset -%}
    {%- set rows = run_query(shape_query).rows -%}
    {%- if rows | length == 0 -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set positions = {} -%}
    {%- set segments = [] -%}
    {%- set components = [] -%}
    {%- set fitted_with = {} -%}
    {%- for row in rows -%}
        {%- if row['param_group'] == 'config' -%}
            {%- do fitted_with.update({'min_events': row['value'] | int}) -%}
        {%- elif row['param_group'] == 'preprocess' -%}
            {%- do positions.update({row['feature_name']: row['value'] | int}) -%}
        {%- elif row['param_group'] == 'kmeans' -%}
            {%- do segments.append(row['segment_id'] | int) -%}
        {%- elif (row['component'] | int) not in components -%}
            {%- do components.append(row['component'] | int) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set features = positions.items() | sort(attribute='1') | map(attribute='0') | list -%}
    {{ return({
        'version': rows[0]['model_version'] | int,
        'features': features,
        'components': components | sort,
        'segments': segments | sort,
        'min_events': fitted_with['min_events']
    }) }}
{%- endmacro %}


{#- One-row relation: every parameter of `model` as its own column, read from the table. -#}
{% macro segment_params_row(model) -%}
    {%- set columns = [] -%}
    {%- for feature in model.features -%}
        {%- set i = loop.index -%}
        {%- for name in ['log1p', 'impute_value', 'clip_low', 'clip_high', 'center', 'scale'] -%}
            {%- do columns.append((name ~ '_' ~ i, "param_group = 'preprocess' and param_name = '" ~ name ~ "' and feature_name = '" ~ feature ~ "'")) -%}
        {%- endfor -%}
        {%- do columns.append(('pca_mean_' ~ i, "param_group = 'pca' and param_name = 'mean' and feature_name = '" ~ feature ~ "'")) -%}
        {%- for c in model.components -%}
            {%- do columns.append(('loading_' ~ i ~ '_' ~ c, "param_group = 'pca' and param_name = 'loading' and feature_name = '" ~ feature ~ "' and component = " ~ c)) -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- for s in model.segments -%}
        {%- for c in model.components -%}
            {%- do columns.append(('centroid_' ~ s ~ '_' ~ c, "param_group = 'kmeans' and param_name = 'centroid' and segment_id = " ~ s ~ " and component = " ~ c)) -%}
        {%- endfor -%}
    {%- endfor -%}
    select
        {%- for name, condition in columns %}
        max(case when {{ condition }} then value end) as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ segment_model_relation() }}
    where model_version = {{ model.version }}
{%- endmacro %}


{#- (user_id, segment_id, distance_to_centroid) for every shopper of `features_relation` with at
    least the model's min_events events. -#}
{% macro segment_scores(model, features_relation) -%}
    {%- if model is none -%}
        {#- Before the first fit (compiling, linting): the shape of the result only. -#}
        select
            user_id,
            cast(null as integer) as segment_id,
            cast(null as {{ type_double() }}) as distance_to_centroid
        from {{ features_relation }}
        where 1 = 0
    {%- else -%}
    {%- set distances = [] -%}
    {%- for s in model.segments -%}
        {%- do distances.append('squared_distance_' ~ s) -%}
    {%- endfor -%}
    with params as (
        {{ segment_params_row(model) | indent(8) }}
    ),

    eligible as (
        select
            user_id,
            {%- for feature in model.features %}
            cast({{ feature }} as {{ type_double() }}) as feature_{{ loop.index }}{{ ',' if not loop.last }}
            {%- endfor %}
        from {{ features_relation }}
        where events >= {{ model.min_events }}
    ),

    imputed as (
        select
            eligible.user_id,
            {%- for feature in model.features %}
            {%- set i = loop.index %}
            case
                when params.log1p_{{ i }} = 1
                    then ln(1 + greatest(coalesce(eligible.feature_{{ i }}, params.impute_value_{{ i }}), 0))
                else coalesce(eligible.feature_{{ i }}, params.impute_value_{{ i }})
            end as transformed_{{ i }}{{ ',' if not loop.last }}
            {%- endfor %}
        from eligible
        cross join params
    ),

    standardised as {{ cte_materialized() }} (
        select
            imputed.user_id,
            {%- for feature in model.features %}
            {%- set i = loop.index %}
            (least(greatest(imputed.transformed_{{ i }}, params.clip_low_{{ i }}), params.clip_high_{{ i }})
                - params.center_{{ i }}) / params.scale_{{ i }} - params.pca_mean_{{ i }}
                as centred_{{ i }}{{ ',' if not loop.last }}
            {%- endfor %}
        from imputed
        cross join params
    ),

    projected as {{ cte_materialized() }} (
        select
            standardised.user_id,
            {%- for c in model.components %}
            {%- set component_loop = loop %}
            {%- for feature in model.features %}
            {{ '+ ' if not loop.first else '' }}standardised.centred_{{ loop.index }} * params.loading_{{ loop.index }}_{{ c }}
            {%- endfor %}
                as component_{{ c }}{{ ',' if not component_loop.last }}
            {%- endfor %}
        from standardised
        cross join params
    ),

    distances as {{ cte_materialized() }} (
        select
            projected.user_id,
            {%- for s in model.segments %}
            {%- set segment_loop = loop %}
            {%- for c in model.components %}
            {{ '+ ' if not loop.first else '' }}(projected.component_{{ c }} - params.centroid_{{ s }}_{{ c }})
                * (projected.component_{{ c }} - params.centroid_{{ s }}_{{ c }})
            {%- endfor %}
                as squared_distance_{{ s }}{{ ',' if not segment_loop.last }}
            {%- endfor %}
        from projected
        cross join params
    ),

    nearest as (
        select
            distances.*,
            {% if distances | length > 1 %}least({{ distances | join(', ') }}){% else %}{{ distances[0] }}{% endif %}
                as squared_distance
        from distances
    )

    select
        user_id,
        -- The first segment at the minimum distance, as numpy's argmin.
        case
            {%- for s in model.segments %}
            when squared_distance_{{ s }} = squared_distance then {{ s }}
            {%- endfor %}
        end as segment_id,
        sqrt(squared_distance) as distance_to_centroid
    from nearest
    {%- endif -%}
{%- endmacro %}


{#- The user_features columns a segment is portrayed by (segment_profiles averages them; int_scored_shoppers
    carries them). One list, so the portrait and its input cannot drift apart. -#}
{% macro segment_profile_features() -%}
    {{ return([
        'events', 'sessions', 'active_days', 'purchases', 'revenue', 'view_to_cart_rate',
        'cart_to_purchase_rate', 'cart_abandonment_rate', 'avg_viewed_price', 'distinct_categories',
        'brand_loyalty', 'weekend_share', 'night_share', 'events_per_session',
        'avg_session_duration_seconds', 'marketing_period_share', 'share_electronics', 'share_computers'
    ]) }}
{%- endmacro %}


{#- The training bin edges of `model` (the `drift` rows of segment_model, written by drift.py): a dict
    feature -> its upper edges in increasing order. Read when the model runs, so segment_drift counts
    the shoppers above each edge in one pass over user_features. Empty with no model. -#}
{% macro drift_bin_edges(model) -%}
    {%- if model is none -%}
        {{ return({}) }}
    {%- endif -%}
    {%- set edges_query -%}
        select feature_name, value
        from {{ segment_model_relation() }}
        where
            model_version = {{ model.version }}
            and param_group = 'drift' and param_name = 'upper_edge' and value is not null
        order by feature_name, value
    {%- endset -%}
    {%- set edges = {} -%}
    {%- for row in run_query(edges_query).rows -%}
        {%- do edges.setdefault(row['feature_name'], []).append(row['value']) -%}
    {%- endfor -%}
    {{ return(edges) }}
{%- endmacro %}


{#- Since when a run of user_segments (`this`) re-scores shoppers: an expression that user_features'
    computed_at is compared with, or none to score every shopper. A shopper's result depends only on
    their features and the model version, so an incremental run with the same version as every
    stored row scores only the shoppers user_features recomputed since user_segments last wrote a row
    (computed_at at or after the latest scored_at: a run's computed_at precedes its scored_at, so the
    previous run's rows are not read again, and rows recomputed by a run that stopped before scoring
    are newer than every scored_at). Everyone is scored on a full build, for a new model version, and
    when the model reads recency_days, which moves for every shopper each day (user_features computes it
    when read). -#}
{% macro segment_rescoring_cutoff(model) -%}
    {%- if not execute or model is none or not is_incremental() or 'recency_days' in model.features -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set stored = run_query('select min(model_version), max(model_version) from ' ~ this).rows[0] -%}
    {%- if stored[0] is none or stored[0] | int != model.version or stored[1] | int != model.version -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return('(select max(scored.scored_at) from ' ~ this ~ ' as scored)') }}
{%- endmacro %}


{#- Since when the snapshot user_segment_history (`this`) compares rows of user_segments: an expression
    that their scored_at must be after, or none to compare every row (its first run). The rows one run
    of user_segments writes share one scored_at (the time of its transaction), and a snapshot that
    captured one of them compared them all: a row written at or before the latest scored_at the
    snapshot holds is unchanged since it was compared. The snapshot leaves shoppers absent from its
    input as they are (hard deletes ignored; departed shoppers are purged by its pre-hook), so it
    records the history a snapshot of the whole table records, while a day compares the day's changes. -#}
{% macro segment_history_cutoff() -%}
    {%- if not execute or adapter.get_relation(this.database, this.schema, this.identifier) is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return('(select max(captured.scored_at) from ' ~ this ~ ' as captured)') }}
{%- endmacro %}
