"""Stable segment identities across model versions.

When the model is retrained, KMeans numbers its clusters arbitrarily. Each new centroid is matched
to a centroid of the previous version with the Hungarian algorithm on their distance, measured in
the units both versions share: the transformed features (after log1p and clipping), divided by the
new version's training standard deviations, as a root-mean-square over the common features.
A pair closer than `max_match_distance` (0.5 SD) is the same segment: the new one takes the
previous id (and, in `naming`, its name). Other new segments get fresh ids above every id used so
far, so an id never changes meaning. The first version numbers segments by size (1 = largest).

The agreement of the two versions — adjusted Rand index and share of shoppers with the same id,
both versions scoring the same shoppers on the same features — is recorded with the new version.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from .params import StoredModel, agreement
from .naming import SegmentSpace


@dataclass
class Match:
    label: int  # KMeans label in the new version
    previous_segment_id: int | None
    distance: float  # RMS distance to the matched (or nearest, if unmatched) previous centroid; NaN without previous


def match_previous(space: SegmentSpace, previous: StoredModel | None, max_distance: float) -> list[Match]:
    """Hungarian matching of the new centroids to the previous version's."""
    n = len(space.z_centroids)
    if previous is None:
        return [Match(label, None, float("nan")) for label in range(n)]
    common = [f for f in space.features if f in previous.features]
    if not common:
        return [Match(label, None, float("nan")) for label in range(n)]
    new_idx = [space.features.index(f) for f in common]
    old_idx = [previous.features.index(f) for f in common]
    new = space.feature_centroids[:, new_idx]
    old = previous.feature_centroids()[:, old_idx]
    scale = space.scale[new_idx]
    distance = np.sqrt((((new[:, None, :] - old[None, :, :]) / scale) ** 2).mean(axis=2))
    rows, cols = linear_sum_assignment(distance)
    paired = dict(zip(rows, cols))
    matches = []
    for label in range(n):
        col = paired.get(label)
        if col is not None and distance[label, col] <= max_distance:
            matches.append(Match(label, int(previous.segment_ids[col]), float(distance[label, col])))
        else:
            matches.append(Match(label, None, float(distance[label].min())))
    return matches


def assign_ids(sizes: np.ndarray, matches: list[Match], previous: StoredModel | None) -> tuple[np.ndarray, int]:
    """KMeans label -> segment id, and the highest id used so far (for the next version)."""
    order = sorted(range(len(sizes)), key=lambda label: (-sizes[label], label))  # largest first
    segment_of_label = np.zeros(len(sizes), dtype=np.int64)
    next_id = (previous.max_segment_id if previous is not None else 0) + 1
    for label in order:
        kept = matches[label].previous_segment_id
        if kept is not None:
            segment_of_label[label] = kept
        else:
            segment_of_label[label] = next_id
            next_id += 1
    used = int(segment_of_label.max()) if len(segment_of_label) else 0
    return segment_of_label, max(used, previous.max_segment_id if previous is not None else 0)


def kept_personas(matches: list[Match], segment_of_label: np.ndarray, previous: StoredModel | None) -> dict[int, str]:
    """New segment id -> persona of the previous segment it continues."""
    if previous is None:
        return {}
    persona_of = dict(zip(previous.labels["segment_id"].astype(int), previous.labels.get("persona_key", [])))
    return {
        int(segment_of_label[m.label]): persona_of[m.previous_segment_id]
        for m in matches
        if m.previous_segment_id is not None and m.previous_segment_id in persona_of
    }


def add_lineage(segments: pd.DataFrame, matches: list[Match], segment_of_label: np.ndarray) -> pd.DataFrame:
    by_id = {int(segment_of_label[m.label]): m for m in matches}
    segments = segments.copy()
    segments["previous_segment_id"] = [
        by_id[int(s)].previous_segment_id if by_id[int(s)].previous_segment_id is not None else np.nan
        for s in segments["segment_id"]
    ]
    segments["match_distance"] = [by_id[int(s)].distance for s in segments["segment_id"]]
    return segments


def retrain_agreement(previous: StoredModel, training: pd.DataFrame, segment_ids: np.ndarray) -> dict[str, float]:
    """How much the new version agrees with the previous one on the same shoppers and features."""
    before = previous.predict(training)
    ari, same = agreement(before, segment_ids)
    previous_ids, new_ids = set(previous.segment_ids.tolist()), set(np.unique(segment_ids).tolist())
    return {
        "previous_version": float(previous.version),
        "compared_users": float(len(training)),
        "agreement_ari": ari,
        "same_segment_share": same,
        "changed_segment_share": 1.0 - same,
        "kept_segments": float(len(previous_ids & new_ids)),
        "new_segments": float(len(new_ids - previous_ids)),
        "retired_segments": float(len(previous_ids - new_ids)),
    }
