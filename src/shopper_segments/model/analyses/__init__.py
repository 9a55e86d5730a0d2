"""Post-fit analyses of a model version: the tables that explain and check the segmentation.

Each public function takes the parameter table (all versions), the versions it has already
analysed and the warehouse inputs, and returns the new rows of one table — for the latest model
version, once (an empty frame when that version is already analysed). So the expensive work runs
only when a model version is fitted, on bounded seeded samples recorded in the rows. They all
study the *stored* model (`params.StoredModel`, which predicts exactly as the SQL scoring does)
on the shoppers it was trained on.

- `k_selection`:        the k scan the fit used, one row per k (criteria, stability, the choice).
- `feature_analysis`:   per candidate feature: redundancy (correlation), separation of the segments,
                        permutation importance through a surrogate classifier.
- `method_comparison`:  KMeans against MiniBatchKMeans, a Gaussian mixture and agglomerative
                        clustering; the configured feature set against all candidates and the
                        correlation-pruned set; the outlier handling against weaker preprocessing,
                        each measured on all shoppers and without the extreme ones.
- `threshold_curve`:    how often a shopper keeps their segment when it is computed from n of
                        their events, against the share of shoppers reaching n; the n giving the
                        most shoppers a segment they keep is the recommended `min_events`.
- `classifier_cv`:      K-NN, decision tree and SVM trained to assign the segments, stratified
                        k-fold cross-validation (folds stratified by segment and extreme flag).
- `segment_rules`:      the decision tree's leaves as readable rules for each segment.

Each analysis lives in its own module (`k_and_features`, `methods`, `threshold`, `assignment`) on the
shared inputs and helpers of `study`; `ANALYSES` names them for the dbt Python models
(`duckdb_inputs.analysis_model`).
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

from .assignment import classifier_cv, segment_rules
from .k_and_features import feature_analysis, k_selection
from .methods import method_comparison
from .threshold import threshold_curve

# Analysis name (the dbt Python model's name without `segment_`) -> the function that computes its rows.
ANALYSES: dict[str, Callable[..., pd.DataFrame]] = {
    function.__name__: function
    for function in (k_selection, feature_analysis, method_comparison, threshold_curve, classifier_cv, segment_rules)
}
