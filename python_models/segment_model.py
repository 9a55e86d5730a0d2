"""The segmentation model: fits preprocessing, PCA and KMeans on eligible shoppers.

One tidy row per fitted parameter, per metric and per segment label, for every model version.
Incremental: a run keeps the current version unless `retrain` is true (or no version exists);
retraining on unchanged inputs adds nothing. The fitting code is shopper_segments.modeling,
shared with `segments fit` for warehouses without Python models.
"""

import pandas as pd

from shopper_segments import modeling


def model(dbt, session):
    dbt.config(materialized="incremental", incremental_strategy="append")
    settings = modeling.FitSettings.from_config(dbt.config.get)

    latest_version, latest_fingerprint = None, None
    if dbt.is_incremental:
        if str(dbt.config.get("retrain", False)).lower() != "true":
            return modeling.empty_params()
        latest = session.sql(
            f"""
            select model_version, text_value from {dbt.this}
            where param_group = 'config' and param_name = 'fingerprint'
            order by model_version desc limit 1
            """
        ).fetchall()
        if latest:
            latest_version, latest_fingerprint = latest[0]

    features = dbt.ref("user_features")
    eligible = features.filter(f"events >= {settings.min_events}").project("user_id").fetchnumpy()["user_id"]

    def fetch_features(user_ids):
        chosen = session.from_df(pd.DataFrame({"chosen_user_id": user_ids}))
        return features.join(chosen, "user_id = chosen_user_id").order("user_id").df().drop(columns="chosen_user_id")

    inputs = modeling.TrainingInputs(
        eligible_user_ids=eligible,
        fetch_features=fetch_features,
        feature_config=dbt.ref("segment_features").df(),
        personas=dbt.ref("segment_personas").df(),
        traits=dbt.ref("segment_persona_traits").df(),
    )
    params, _ = modeling.train_new_version(inputs, settings, latest_version, latest_fingerprint)
    return params
