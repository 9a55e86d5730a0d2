"""Choosing the number of segments (k) and the number of principal components.

k is scanned over [k_min, k_max] on a seeded sample of the training shoppers, in the PCA space the
segments live in. Each k gets the usual internal criteria — inertia (for the elbow), silhouette,
Davies-Bouldin, Calinski-Harabasz — a bootstrap stability (KMeans refitted on resamples, mean
adjusted Rand index between each refit and the reference fit) and the silhouette the same k reaches
on copies of the sample with the structure removed (each principal component permuted on its own:
the structure verdict's null, `structure.permuted`). The silhouette alone favours the coarsest
split of shopper data (buyers against non-buyers, k = 2) even when finer groups exist; its
**excess over the null** measures what a k finds beyond the shape of each feature. So the rule is:

1. keep the stable k (mean bootstrap ARI >= `min_stability`, 0.85); if none is, keep them all;
2. excesses within `excess_tolerance` (0.02) of the largest are a tie: at that precision the
   estimate cannot tell them apart;
3. on a retraining, the previous version's k is kept if it is among the tied k (so segments are
   not reshuffled for noise);
4. otherwise, among the tied k, keep the most stable ones (stability within
   `stability_tolerance`, 0.02, of the highest: the bootstrap estimate is noisy too) and take the
   largest excess among those.

Calinski-Harabasz favours small k and Davies-Bouldin large k on shopper data, so they are
reported, not voted with; the elbow of the inertia curve is reported as a sanity check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score, davies_bouldin_score, silhouette_score

from . import structure
from .params import FitSettings

SCAN_COLUMNS = {
    "k": "int64",
    "inertia": "float64",
    "silhouette": "float64",
    "null_silhouette": "float64",
    "silhouette_excess": "float64",
    "davies_bouldin": "float64",
    "calinski_harabasz": "float64",
    "stability_ari": "float64",
    "stability_ari_std": "float64",
    "smallest_segment_share": "float64",
}


NULL_SCAN_COLUMNS = ("null_silhouette", "silhouette_excess")  # empty for versions fitted before they existed


@dataclass
class KChoice:
    k: int
    reason: str
    scan: pd.DataFrame | None  # one row per k (SCAN_COLUMNS), or None when k was fixed


def scan_sample(projected: np.ndarray, settings: FitSettings) -> np.ndarray:
    """The seeded sample of at most `scan_sample_size` rows the scan runs on."""
    if len(projected) <= settings.scan_sample_size:
        return projected
    rng = np.random.default_rng(settings.random_state)
    return projected[np.sort(rng.choice(len(projected), settings.scan_sample_size, replace=False))]


def bootstrap_stability(sample: np.ndarray, reference: np.ndarray, k: int, settings: FitSettings) -> np.ndarray:
    """ARI between the reference labels and KMeans refitted on each bootstrap resample (predicting all rows)."""
    rng = np.random.default_rng(settings.random_state + 1000 + k)
    scores = []
    for b in range(settings.scan_bootstraps):
        rows = rng.choice(len(sample), len(sample), replace=True)
        refit = KMeans(k, n_init=settings.kmeans_n_init, random_state=settings.random_state + b + 1).fit(sample[rows])
        scores.append(adjusted_rand_score(reference, refit.predict(sample)))
    return np.array(scores)


def null_silhouette(sample: np.ndarray, k: int, settings: FitSettings) -> float:
    """Mean silhouette of KMeans(k) on copies of the sample with each component permuted
    independently (the structure verdict's null, structure.permuted): what k segments score on
    these shoppers' own distributions with nothing tying the components together. Three KMeans
    starts per copy, as the verdict's null: against the reference fit's ten, measured on the
    calibrated world, the null silhouette moves by at most 0.01 either way (the scale of the tie
    tolerance), with no direction, and the scan costs a third."""
    rng = np.random.default_rng(settings.random_state + 2000 + k)
    sample_size = min(settings.silhouette_sample, len(sample))
    scores = [structure.fit_and_score(structure.permuted(sample, rng), k, settings.random_state + draw,
                                      sample_size=sample_size, sample_state=settings.random_state)[0]
              for draw in range(settings.scan_null_draws)]
    return float(np.mean(scores))


def scan_k(projected: np.ndarray, settings: FitSettings) -> pd.DataFrame:
    """The criteria of every k in [k_min, k_max] (bounded so every segment can have 10 shoppers)."""
    sample = scan_sample(projected, settings)
    k_max = max(settings.k_min, min(settings.k_max, len(sample) // 10))
    rows = []
    for k in range(settings.k_min, k_max + 1):
        reference = KMeans(k, n_init=settings.kmeans_n_init, random_state=settings.random_state).fit(sample)
        labels = reference.labels_
        stability = bootstrap_stability(sample, labels, k, settings)
        separated = len(np.unique(labels)) > 1
        silhouette = float(
            silhouette_score(
                sample, labels, sample_size=min(settings.silhouette_sample, len(sample)),
                random_state=settings.random_state,
            )
        ) if separated else float("nan")
        null = null_silhouette(sample, k, settings)
        rows.append(
            {
                "k": k,
                "inertia": float(reference.inertia_),
                "silhouette": silhouette,
                "null_silhouette": null,
                "silhouette_excess": silhouette - null,
                "davies_bouldin": float(davies_bouldin_score(sample, labels)) if separated else float("nan"),
                "calinski_harabasz": float(calinski_harabasz_score(sample, labels)) if separated else float("nan"),
                "stability_ari": float(stability.mean()),
                "stability_ari_std": float(stability.std()),
                "smallest_segment_share": float(np.bincount(labels, minlength=k).min() / len(labels)),
            }
        )
    return pd.DataFrame(rows).astype(SCAN_COLUMNS)


def elbow(scan: pd.DataFrame) -> int:
    """The k farthest below the straight line joining the first and last inertia (the "knee")."""
    if len(scan) < 3:
        return int(scan["k"].iloc[0])
    k = scan["k"].to_numpy(dtype=float)
    inertia = scan["inertia"].to_numpy(dtype=float)
    x = (k - k[0]) / (k[-1] - k[0])
    y = (inertia - inertia[-1]) / max(inertia[0] - inertia[-1], 1e-12)
    return int(k[np.argmax((1 - x) - y)])


def choose_k(scan: pd.DataFrame, settings: FitSettings, previous_k: int | None = None) -> KChoice:
    """Apply the rule of the module docstring; the reason says which criterion decided."""
    stable = scan[scan["stability_ari"] >= settings.min_stability]
    pool = stable if len(stable) else scan
    best = pool.sort_values(["silhouette_excess", "k"], ascending=[False, True]).iloc[0]
    tied = pool[pool["silhouette_excess"] >= best["silhouette_excess"] - settings.excess_tolerance]
    steady = tied[tied["stability_ari"] >= tied["stability_ari"].max() - settings.stability_tolerance]
    if previous_k is not None and previous_k in set(tied["k"]):
        k, decided_by = int(previous_k), "the previous version's k is among them: it is kept"
    else:
        k = int(steady.sort_values(["silhouette_excess", "k"], ascending=[False, True])["k"].iloc[0])
        decided_by = (
            f"the most stable of those ({', '.join(f'k={int(t)}' for t in sorted(steady['k']))}: stability within "
            f"{settings.stability_tolerance:.2f} of the highest) are kept, k={k} has the largest excess among them"
        )
    row = scan.set_index("k").loc[k]
    ties = ", ".join(f"k={int(t)}" for t in sorted(tied["k"]))
    reason = (
        f"k={k}: silhouette {row.silhouette:.3f} against {row.null_silhouette:.3f} with the structure removed "
        f"(excess {row.silhouette_excess:.3f}), bootstrap stability {row.stability_ari:.3f}. "
        + (f"Among the {len(pool)} stable k (stability >= {settings.min_stability:.2f}), "
           if len(stable) else f"No k reached stability {settings.min_stability:.2f}; among all {len(pool)}, ")
        + f"the largest silhouette excess is {best['silhouette_excess']:.3f} (k={int(best['k'])})"
        + (f"; {ties} are within {settings.excess_tolerance:.3f} of it; {decided_by}" if len(tied) > 1 else "")
        + f". The inertia elbow is at k={elbow(scan)}."
    )
    return KChoice(k, reason, scan)


def k_selection_table(scan: pd.DataFrame, choice: KChoice, settings: FitSettings, sample_users: int) -> pd.DataFrame:
    """The scan as BI reads it: one row per k, with the choice, the rule's filters and the sample size."""
    table = scan.copy()
    table["is_stable"] = table["stability_ari"] >= settings.min_stability
    table["is_elbow"] = table["k"] == elbow(scan)
    table["is_chosen"] = table["k"] == choice.k
    table["reason"] = np.where(table["is_chosen"], choice.reason, None)
    table["sample_users"] = sample_users
    table["bootstraps"] = settings.scan_bootstraps
    table["random_seed"] = settings.random_state
    return table


def pca_curve(pipeline, values: np.ndarray) -> pd.DataFrame:
    """Explained variance of every principal component of the scaled features, and which are kept.

    The fitted PCA keeps the fewest components reaching `pca_variance`; a full PCA on the same
    scaled data gives the rest of the curve (the kept components are the same).
    """
    scaled = pipeline[:2].transform(values)
    full = PCA(svd_solver="full").fit(scaled)
    kept = pipeline.named_steps["pca"].n_components_
    ratio = full.explained_variance_ratio_
    return pd.DataFrame(
        {
            "component": np.arange(1, len(ratio) + 1),
            "explained_variance_ratio": ratio,
            "cumulative_explained_variance": np.cumsum(ratio),
            "kept": (np.arange(1, len(ratio) + 1) <= kept).astype(float),
        }
    )
