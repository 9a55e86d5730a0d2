"""The segmentation model: fits preprocessing, PCA and KMeans (k chosen) on eligible shoppers.

One tidy row per fitted parameter, per metric and per segment label, for every model version.
Incremental: a run keeps the current version unless `retrain` is true (or no version exists);
retraining on unchanged inputs adds nothing. A retrained version keeps the ids and names of the
segments it shares with the current one. The fitting code is shopper_segments.modeling, shared
with `segments fit` for warehouses without Python models.
"""

from shopper_segments import duckdb_inputs, modeling


def model(dbt, session):
    dbt.config(materialized="incremental", incremental_strategy="append")
    settings = modeling.FitSettings.from_config(dbt.config.get)

    latest_version, latest_fingerprint, previous = None, None, None
    if dbt.is_incremental:
        if str(dbt.config.get("retrain", False)).lower() != "true":
            return modeling.empty_params()
        previous = session.sql(
            f"select * from {dbt.this} where model_version = (select max(model_version) from {dbt.this})"
        ).df()
        fingerprint = previous[(previous.param_group == "config") & (previous.param_name == "fingerprint")]
        if len(fingerprint):
            latest_version, latest_fingerprint = int(fingerprint.model_version.iloc[0]), fingerprint.text_value.iloc[0]

    features = dbt.ref("user_features")
    eligible = features.filter(f"events >= {settings.min_events}").project("user_id").fetchnumpy()["user_id"]
    inputs = modeling.TrainingInputs(
        eligible_user_ids=eligible,
        fetch_features=lambda user_ids: duckdb_inputs.rows_of(session, features, "user_id", user_ids),
        feature_config=dbt.ref("segment_features").df(),
        personas=dbt.ref("segment_personas").df(),
        traits=dbt.ref("segment_persona_traits").df(),
    )
    params, _ = modeling.train_new_version(inputs, settings, latest_version, latest_fingerprint, previous)
    return params
