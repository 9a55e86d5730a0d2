"""Is there structure to segment? The verdict stored with every model version (docs/model.md).

KMeans always returns k groups, even from shoppers who form one continuum; its silhouette alone
cannot tell (a continuum cut in k pieces has a silhouette of 0.15-0.3 too). So the fitted
clustering is compared with a **null reference built from the same shoppers with the structure
removed**: in the model's principal-component space, each component is permuted independently
across shoppers. That keeps every component's distribution (skew, heavy tails, the mass of
non-buyers) and destroys what ties the components together, which is what segments are made of
(the gap statistic of Tibshirani et al. with a reference aligned on the principal components,
using a permutation instead of a uniform box so heavy-tailed components are kept as they are).

Over `bootstraps` resamples of the training shoppers, KMeans with the model's k is fitted to the
resample and to its permuted copy; the figures are the silhouettes of both (observed, null) and
the gap, log(inertia of the null) - log(inertia observed). The rule (RULE) gives the verdict:

- `clear`: the observed silhouette beats the null's by at least CLEAR_EXCESS in the mean, and
  in every bootstrap;
- `weak`: it beats it by at least WEAK_EXCESS in the mean and in at least 90 % of the bootstraps;
- `none`: otherwise: the segments are a convenience partition of a continuum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

NULL_N_INIT = 3  # KMeans starts per fit of the null (and of its observed twin here)
CLEAR_EXCESS = 0.09
WEAK_EXCESS = 0.03
WEAK_WIN_SHARE = 0.9
VERDICTS = ("clear", "weak", "none")
RULE = (
    f"clear: observed silhouette - null silhouette >= {CLEAR_EXCESS} on average and > 0 in every bootstrap; "
    f"weak: >= {WEAK_EXCESS} on average and > 0 in at least {WEAK_WIN_SHARE:.0%} of the bootstraps; "
    "none: otherwise (null: each principal component permuted independently, same k)"
)


@dataclass(frozen=True)
class StructureVerdict:
    verdict: str
    observed_silhouette: float  # mean over the bootstraps
    null_silhouette: float
    null_silhouette_sd: float
    gap: float  # mean of log(null inertia) - log(observed inertia)
    gap_sd: float
    win_share: float  # share of bootstraps where the observed silhouette beats the null's
    bootstraps: int
    sample_users: int
    rule: str = RULE

    def metrics(self) -> dict[str, float]:
        """The figures, as rows of the metric group of the parameter table."""
        return {
            "structure_observed_silhouette": self.observed_silhouette,
            "structure_null_silhouette": self.null_silhouette,
            "structure_null_silhouette_sd": self.null_silhouette_sd,
            "structure_silhouette_excess": self.observed_silhouette - self.null_silhouette,
            "structure_gap": self.gap,
            "structure_gap_sd": self.gap_sd,
            "structure_win_share": self.win_share,
            "structure_bootstraps": float(self.bootstraps),
            "structure_sample_users": float(self.sample_users),
        }


def decide(excess: float, win_share: float) -> str:
    """The documented rule (module docstring)."""
    if excess >= CLEAR_EXCESS and win_share == 1.0:
        return "clear"
    if excess >= WEAK_EXCESS and win_share >= WEAK_WIN_SHARE:
        return "weak"
    return "none"


def permuted(space: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each column shuffled independently: the marginals stay, the joint structure goes."""
    return np.column_stack([rng.permutation(column) for column in space.T])


def fit_and_score(data: np.ndarray, k: int, random_state: int, n_init: int = NULL_N_INIT,
                  sample_size: int | None = None, sample_state: int | None = None) -> tuple[float, float]:
    """(silhouette, inertia) of KMeans(k) on `data`; the silhouette (on `sample_size` rows drawn with
    `sample_state`, all by default) is 0 when KMeans finds one group. The fit of an observed sample
    and of its null alike (here and in the k scan's null)."""
    fit = KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit(data)
    labels = fit.labels_
    silhouette = (silhouette_score(data, labels, sample_size=sample_size, random_state=sample_state)
                  if len(np.unique(labels)) > 1 else 0.0)
    return silhouette, fit.inertia_


def structure_verdict(space: np.ndarray, k: int, random_state: int, bootstraps: int = 10,
                      sample_size: int = 3_000, n_init: int = NULL_N_INIT) -> StructureVerdict:
    """Compare KMeans(k) on `space` (shoppers x principal components) with the permutation null."""
    rng = np.random.default_rng(random_state)
    n = min(sample_size, len(space))
    observed, null, gaps = [], [], []
    for b in range(bootstraps):
        resample = space[rng.integers(0, len(space), n)]
        reference = permuted(resample, rng)
        (observed_score, observed_inertia), (null_score, null_inertia) = (
            fit_and_score(data, k, random_state + b, n_init) for data in (resample, reference))
        observed.append(observed_score)
        null.append(null_score)
        gaps.append(np.log(null_inertia) - np.log(observed_inertia))
    observed_arr, null_arr, gap_arr = np.array(observed), np.array(null), np.array(gaps)
    excess = float(observed_arr.mean() - null_arr.mean())
    win_share = float(np.mean(observed_arr > null_arr))
    return StructureVerdict(
        verdict=decide(excess, win_share),
        observed_silhouette=float(observed_arr.mean()),
        null_silhouette=float(null_arr.mean()),
        null_silhouette_sd=float(null_arr.std()),
        gap=float(gap_arr.mean()),
        gap_sd=float(gap_arr.std()),
        win_share=win_share,
        bootstraps=bootstraps,
        sample_users=n,
    )
