"""Post-fit analyses of supervised assignment (see `analyses`).

- `classifier_cv`: K-NN, decision tree and SVM trained to assign the segments, stratified k-fold
                   cross-validation (folds stratified by segment and extreme flag).
- `segment_rules`: the decision tree's leaves as readable rules for each segment.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from ..params import FeatureSpec, FitSettings, HeavyTailPreprocessor, StoredModel, single_threaded
from .study import (
    ANALYSIS,
    StudyInputs,
    empty_frame,
    extreme_users,
    model_specs,
    pending_model,
    seeded_sample,
    study_sample,
    typed_frame,
)


# --------------------------------------------------------------------------------------------------
# Supervised assignment: cross-validation and rules
# --------------------------------------------------------------------------------------------------

CV_COLUMNS = {
    "model_version": "int64",
    "classifier": "string",
    "fold": "int64",
    "accuracy": "float64",
    "macro_f1": "float64",
    "extreme_accuracy": "float64",
    "train_users": "int64",
    "test_users": "int64",
    "extreme_test_users": "int64",
    "hyperparameters": "string",
    "random_seed": "int64",
}

RULE_COLUMNS = {
    "model_version": "int64",
    "segment_id": "int64",
    "rule_number": "int64",
    "rule_text": "string",
    "conditions": "int64",
    "users": "int64",
    "precision": "float64",
    "coverage": "float64",
    "sample_users": "int64",
    "random_seed": "int64",
}


def classifiers(specs: list[FeatureSpec], settings: FitSettings, n_train: int) -> dict[str, tuple[Pipeline, str]]:
    """The assignment models, each with the preprocessing fitted inside the folds (no leakage).

    K-NN and SVM work on distances, so they get the model's outlier-robust preprocessing (log1p,
    winsorising, standard scaling). The tree only needs imputation: it is invariant to monotone
    transforms and its thresholds stay readable in the features' own units.
    """
    robust = lambda: HeavyTailPreprocessor(specs, settings.clip_low_quantile, settings.clip_high_quantile)  # noqa: E731
    plain = [FeatureSpec(s.name, False, s.impute, s.label) for s in specs]
    leaf = max(10, n_train // 100)
    neighbours = max(1, min(ANALYSIS.knn_neighbors, n_train))  # a tiny sample (a data head) has fewer shoppers
    seed = settings.random_state
    return {
        "knn": (
            Pipeline([("preprocess", robust()), ("scale", StandardScaler()),
                      ("model", KNeighborsClassifier(neighbours))]),
            f"k={neighbours} neighbours, uniform weights, on log1p + winsorised + standardised features",
        ),
        "decision_tree": (
            Pipeline([("preprocess", HeavyTailPreprocessor(plain, 0.0, 1.0)),
                      ("model", DecisionTreeClassifier(max_depth=ANALYSIS.tree_max_depth, min_samples_leaf=leaf,
                                                       random_state=seed))]),
            f"max_depth={ANALYSIS.tree_max_depth}, min_samples_leaf={leaf}, on imputed features in their own units",
        ),
        "svm": (
            Pipeline([("preprocess", robust()), ("scale", StandardScaler()),
                      ("model", SVC(kernel="rbf", C=1.0, gamma="scale", random_state=seed))]),
            "RBF kernel, C=1, gamma=scale, on log1p + winsorised + standardised features",
        ),
    }


def _cv_sample(stored: StoredModel, study: StudyInputs) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    sample = seeded_sample(study_sample(stored, study), ANALYSIS.cv_sample_size, stored.settings.random_state + 1)
    return sample, stored.predict(sample), extreme_users(stored, sample)


def cv_strata(labels: np.ndarray, extreme: np.ndarray, folds: int) -> tuple[np.ndarray, int]:
    """Stratification keys segment x extreme flag, and the number of folds.

    A segment's extreme shoppers too few to reach every fold are stratified with the rest of their
    segment; the folds drop below `folds` only if a whole segment is that small (at least 2).
    """
    keys = pd.Series(labels).astype(str) + np.where(extreme, "/extreme", "")
    counts = keys.map(keys.value_counts())
    keys = keys.where(counts >= folds, pd.Series(labels).astype(str))
    smallest = int(keys.value_counts().min()) if len(keys) else 0
    return pd.factorize(keys)[0], max(2, min(folds, smallest))


@single_threaded
def classifier_cv(params: pd.DataFrame, analysed_versions: Iterable[int], study: StudyInputs) -> pd.DataFrame:
    """Stratified k-fold CV of K-NN, decision tree and SVM learning the segments of the latest version.

    Folds are stratified on segment x extreme flag, so every fold gets its share of each segment
    and of the extreme shoppers (a fold holding most of them would swing the scores).
    """
    stored = pending_model(params, analysed_versions)
    if stored is None:
        return empty_frame(CV_COLUMNS)
    seed = stored.settings.random_state
    sample, labels, extreme = _cv_sample(stored, study)
    specs = model_specs(stored, study.feature_config)
    X = sample[stored.features].to_numpy(float)
    strata, folds = cv_strata(labels, extreme, ANALYSIS.cv_folds)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    rows = []
    for name in ("knn", "decision_tree", "svm"):
        for fold, (train, test) in enumerate(splitter.split(X, strata), start=1):
            model, description = classifiers(specs, stored.settings, len(train))[name]
            if len(np.unique(labels[train])) < 2:  # a tiny sample: SVM cannot fit one class; say so
                model, description = DummyClassifier(strategy="most_frequent"), "one segment in the fold: constant"
            predicted = model.fit(X[train], labels[train]).predict(X[test])
            ext = extreme[test]
            rows.append(
                {
                    "model_version": stored.version,
                    "classifier": name,
                    "fold": fold,
                    "accuracy": float(accuracy_score(labels[test], predicted)),
                    "macro_f1": float(f1_score(labels[test], predicted, average="macro")),
                    "extreme_accuracy": float(accuracy_score(labels[test][ext], predicted[ext])) if ext.any() else np.nan,
                    "train_users": len(train),
                    "test_users": len(test),
                    "extreme_test_users": int(ext.sum()),
                    "hyperparameters": description,
                    "random_seed": seed,
                }
            )
    return typed_frame(rows, CV_COLUMNS)


def _leaf_rules(tree: DecisionTreeClassifier, features: list[str]) -> dict[int, list[tuple[str, str, float]]]:
    """Leaf node -> list of (feature, '<=' or '>', threshold) on its path from the root."""
    t = tree.tree_
    paths: dict[int, list] = {}

    def walk(node: int, conditions: list) -> None:
        if t.children_left[node] == -1:
            paths[node] = conditions
            return
        feature, threshold = features[t.feature[node]], float(t.threshold[node])
        walk(t.children_left[node], conditions + [(feature, "<=", threshold)])
        walk(t.children_right[node], conditions + [(feature, ">", threshold)])

    walk(0, [])
    return paths


def rule_text(conditions: list[tuple[str, str, float]]) -> str:
    """Conditions merged per feature into readable bounds, e.g. "night_share > 0.31 and sessions <= 4"."""
    bounds: dict[str, list[float | None]] = {}
    for feature, op, threshold in conditions:
        low, high = bounds.setdefault(feature, [None, None])
        if op == ">":
            bounds[feature][0] = threshold if low is None else max(low, threshold)
        else:
            bounds[feature][1] = threshold if high is None else min(high, threshold)
    parts = []
    for feature, (low, high) in bounds.items():
        if low is not None and high is not None:
            parts.append(f"{low:.3g} < {feature} <= {high:.3g}")
        elif low is not None:
            parts.append(f"{feature} > {low:.3g}")
        else:
            parts.append(f"{feature} <= {high:.3g}")
    return " and ".join(parts) if parts else "all shoppers"


@single_threaded
def segment_rules(params: pd.DataFrame, analysed_versions: Iterable[int], study: StudyInputs) -> pd.DataFrame:
    """Each segment as the decision tree's leaves that predict it: readable rules with their precision.

    The tree (the one cross-validated in `classifier_cv`) is fitted on the whole CV sample; a leaf
    is a rule "conditions -> segment"; `precision` is the share of the leaf's shoppers who are in
    that segment and `coverage` the share of the segment's shoppers the rule catches.
    """
    stored = pending_model(params, analysed_versions)
    if stored is None:
        return empty_frame(RULE_COLUMNS)
    seed = stored.settings.random_state
    sample, labels, _ = _cv_sample(stored, study)
    specs = model_specs(stored, study.feature_config)
    pipeline, _ = classifiers(specs, stored.settings, len(sample))["decision_tree"]
    X = sample[stored.features].to_numpy(float)
    pipeline.fit(X, labels)
    tree: DecisionTreeClassifier = pipeline.named_steps["model"]
    leaves = tree.apply(pipeline.named_steps["preprocess"].transform(X))
    paths = _leaf_rules(tree, stored.features)
    segment_sizes = pd.Series(labels).value_counts()

    rows = []
    for leaf, conditions in paths.items():
        members = leaves == leaf
        if not members.any():
            continue
        predicted = tree.classes_[int(np.argmax(tree.tree_.value[leaf][0]))]
        hits = int((labels[members] == predicted).sum())
        rows.append(
            {
                "segment_id": int(predicted),
                "rule_text": rule_text(conditions),
                "conditions": len(conditions),
                "users": int(members.sum()),
                "precision": hits / int(members.sum()),
                "coverage": hits / int(segment_sizes[predicted]),
            }
        )
    frame = pd.DataFrame(rows).sort_values(["segment_id", "coverage", "precision"], ascending=[True, False, False])
    frame["rule_number"] = frame.groupby("segment_id").cumcount() + 1
    frame["model_version"] = stored.version
    frame["sample_users"] = len(sample)
    frame["random_seed"] = seed
    return frame[list(RULE_COLUMNS)].astype(RULE_COLUMNS).reset_index(drop=True)
