"""The segmentation model: fits preprocessing, PCA and KMeans (k chosen) on eligible shoppers.

One tidy row per fitted parameter, per metric and per segment label, for every model version.
Incremental: a run keeps the current version unless `retrain` is true (or no version exists);
retraining on unchanged inputs adds nothing. A retrained version keeps the ids and names of the
segments it shares with the current one. The fitting code is shopper_segments.model.training, shared
with `segments fit` for warehouses without Python models.

The settings (the project's vars) come in `meta` (python_models/_python_models.yml): dbt hands a
Python model only the config keys written literally as `dbt.config.get("...")` in its code.
When too few shoppers are eligible, nothing is fitted (the run says so in one line) and every
shopper stays `not_enough_history` in user_segments, or keeps the current version's segment.
"""

from shopper_segments.model import due


def model(dbt, session):
    dbt.config(materialized="incremental", incremental_strategy="append")
    meta = dbt.config.get("meta")
    if not due.fit_may_be_due(dbt, session, meta):
        return due.no_new_rows(dbt, session)
    # A fit may happen: the training code and scikit-learn are imported now, not on a daily run.
    from shopper_segments.model import duckdb_inputs, params, training

    settings = params.FitSettings.from_model_meta(meta)

    current = None
    if dbt.is_incremental:
        current = session.sql(
            f"select * from {dbt.this} where model_version = (select max(model_version) from {dbt.this})"
        ).df()
    features = dbt.ref("user_features")
    eligible = features.filter(f"events >= {settings.min_events}").project("user_id")

    def read_inputs():
        return training.TrainingInputs(
            eligible_user_ids=eligible.fetchnumpy()["user_id"],
            fetch_features=lambda user_ids: duckdb_inputs.rows_of(session, features, "user_id", user_ids),
            feature_config=dbt.ref("segment_features").df(),
            personas=dbt.ref("segment_personas").df(),
            traits=dbt.ref("segment_persona_traits").df(),
        )

    return training.fit_if_due(current, due.retrain_requested(meta), settings, read_inputs)
