"""Drift: each model version's training distribution, and the run's verdict on how far today's
shoppers have moved from it (docs/model.md, "Drift").

At fit time every model feature's training values are cut into bins at the training deciles and
the share of training shoppers in each bin is stored with the version, as `drift` rows of
segment_model (so every warehouse where a version is fitted holds them: the dbt Python model and
`segments fit` both go through training.train_new_version). The per-run comparison is SQL
(models/segments/segment_drift.sql): it puts the current eligible shoppers in the same bins and
computes the population stability index (PSI). This module also reads the verdict back for
`segments run --retrain-if-drifted`.

Bins: bin 0 holds missing values; bin b >= 1 holds values in (edge[b-1], edge[b]] over the distinct
training deciles (an open upper end for the last one), so a feature with many ties (zeros) gets
fewer, wider bins rather than empty ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

DRIFT_BINS = 10
# The verdicts of segment_drift, from calm to alarming; the last one triggers --retrain-if-drifted.
VERDICTS = ("stable", "drifting", "retrain recommended")
RETRAIN_VERDICT = VERDICTS[-1]


def bin_edges(values: pd.Series, bins: int = DRIFT_BINS) -> np.ndarray:
    """The distinct inner training quantiles (deciles by default) of the non-missing values."""
    present = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if not len(present):
        return np.array([], dtype=float)
    quantiles = np.quantile(present, np.arange(1, bins) / bins, method="lower")
    return np.unique(quantiles)


def bin_of(values: pd.Series, edges: np.ndarray) -> np.ndarray:
    """Bin number of each value (as segment_drift.sql computes it): 0 if missing, else 1 + edges below it."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bins = 1 + np.searchsorted(edges, numbers, side="left")
    return np.where(np.isnan(numbers), 0, bins)


def training_bin_rows(training: pd.DataFrame, feature_names: list[str]) -> list[dict]:
    """segment_model rows (param_group `drift`) for every feature: per bin, its upper edge (NULL
    for the open last bin and the missing bin) and the share of training shoppers in it."""
    rows: list[dict] = []
    total = max(len(training), 1)
    for feature in feature_names:
        edges = bin_edges(training[feature])
        counts = np.bincount(bin_of(training[feature], edges), minlength=len(edges) + 2)
        for number, count in enumerate(counts):
            upper = float(edges[number - 1]) if 1 <= number <= len(edges) else None
            common = {"param_group": "drift", "feature_name": feature, "component": number, "segment_id": None,
                      "text_value": None}
            rows.append({**common, "param_name": "upper_edge", "value": upper})
            rows.append({**common, "param_name": "training_share", "value": float(count) / total})
    return rows


def population_stability_index(expected: np.ndarray, actual: np.ndarray, floor: float = 1e-4) -> float:
    """PSI of two share vectors over the same bins (shares floored as segment_drift.sql does)."""
    expected, actual = np.maximum(expected, floor), np.maximum(actual, floor)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def newest_run(read_frame: Callable[[str], pd.DataFrame]) -> pd.DataFrame | None:
    """The newest run's rows of segment_drift (empty while no version is fitted; None when this
    warehouse has no segment_drift yet, e.g. a run that `--select`ed other models).

    `read_frame(sql)` queries the warehouse; `{drift}` in the SQL stands for the table, `{schema}` for
    the schema it is built in."""
    built = read_frame(
        "select count(*) as n from information_schema.tables "
        "where table_schema = '{schema}' and table_name = 'segment_drift'"
    )
    if int(built["n"].iloc[0]) == 0:
        return None
    return read_frame(
        "select measure_type, measure_name, segment_id, current_value, training_value, previous_value, psi, "
        "measure_status, verdict from {drift} where run_started_at = (select max(run_started_at) from {drift})"
    )


def verdict_line(run: pd.DataFrame | None) -> str:
    """One line for `segments run`: the verdict and the features that drift (by PSI, largest first)."""
    if run is None:
        return "Drift: segment_drift is not built in this warehouse (not selected in this run)."
    if run.empty:
        return "Drift: nothing to compare yet (no model version fitted; segment_drift is empty)."
    features = run[(run.measure_type == "feature_psi") & (run.measure_status != "stable")]
    named = ", ".join(f"{row.measure_name} (PSI {row.psi:.2f})"
                      for row in features.sort_values("psi", ascending=False).head(5).itertuples()) or "none"
    mix = run.loc[run.measure_type == "segment_mix_psi", "psi"]
    mix_text = f"; segment mix PSI {mix.iloc[0]:.2f}" if len(mix) else ""
    return f"Drift verdict: {run.verdict.iloc[0]}; drifting features: {named}{mix_text} (segment_drift)."


def warehouse_reader(target: str, duckdb_path: Path) -> Callable[[str], pd.DataFrame]:
    """`read_frame(sql)` on the target's warehouse, `{drift}` replaced by segment_drift's relation and
    `{schema}` by the schema dbt builds it in."""
    from ..ingest import connections

    schema = connections.target_schema(target)
    if target == "duckdb":
        import duckdb

        def read_duckdb(sql: str) -> pd.DataFrame:
            with duckdb.connect(str(duckdb_path), read_only=True) as con:
                return con.sql(sql.format(drift="segment_drift", schema=schema)).df()

        return read_duckdb
    relation = f"{connections.quote(schema)}.{connections.quote('segment_drift')}"

    def read_remote(sql: str) -> pd.DataFrame:
        con = connections.connect(target)
        try:
            return connections.read_frame(con, sql.format(drift=relation, schema=schema))
        finally:
            con.close()

    return read_remote


def freshness_line(results) -> str:
    """One line for `segments run`: each source's freshness status and the age of its newest row.

    `results` are the SourceFreshnessResult objects of `dbt source freshness` (node, status, age in s)."""
    parts = []
    sources = [result for result in results if result.node.unique_id.startswith("source.")]  # not the hooks
    for result in sorted(sources, key=lambda item: item.node.unique_id):
        name = ".".join(result.node.unique_id.split(".")[-2:])
        age = getattr(result, "age", None)
        age_text = f", newest {age / 86400:.1f} days ago" if age is not None else ""
        parts.append(f"{name} {str(result.status).upper()}{age_text}")
    return "Source freshness: " + ("; ".join(parts) or "no source has a freshness check") + "."
