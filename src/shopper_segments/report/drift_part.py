"""The report's first section, "What changed": the newest run against the training data and the previous run."""

from __future__ import annotations

import pandas as pd

from .format import esc, is_missing, note, num, pct, table
from .warehouse import Warehouse

VERDICT_TEXT = {
    "stable": "today's shoppers look like the ones the model was trained on: the segments can be used as they are.",
    "drifting": "some behaviour has moved since the model was trained: watch the features below before "
                "planning on segment sizes.",
    "retrain recommended": "the shoppers have moved far from the training data: fit a new model version "
                           "(`segments run --retrain`, or `--retrain-if-drifted` on every run).",
}


def what_changed(w: Warehouse) -> str:
    """The newest run against the training data and the previous run (segment_drift, docs/model.md "Drift")."""
    run = w.rows(
        "select measure_type, measure_name, segment_id, current_value, training_value, previous_value, psi, "
        "verdict, verdict_rule, model_version, run_started_at from segment_drift "
        "where run_started_at = (select max(r.run_started_at) from segment_drift as r)",
        "segment_drift", what="drift measured (no model version fitted)",
    )
    first = run.iloc[0]
    verdict = str(first["verdict"])
    parts = [f'<div class="verdict" id="drift-verdict"><b>{esc(verdict.capitalize())}</b> (run of '
             f"{pd.Timestamp(first['run_started_at']):%Y-%m-%d %H:%M} UTC against model version "
             f"{int(first['model_version'])}): {esc(VERDICT_TEXT.get(verdict, ''))} "
             f"<small>Rule: {esc(first['verdict_rule'])}.</small></div>"]
    shares = run[run.measure_type == "segment_share"].copy()
    if len(shares):
        names = {}
        if "segment_labels" in w.tables:
            labels = w.frame(f"select segment_id, segment_name from segment_labels "
                             f"where model_version = {int(first['model_version'])}")
            names = dict(zip(labels.segment_id, labels.segment_name))
        shares["segment"] = [names.get(i, f"segment {i}") for i in shares.segment_id]
        shares["change since training"] = shares.current_value - shares.training_value
        shares["change since previous run"] = shares.current_value - shares.previous_value
        shares = shares.sort_values("change since training", key=abs, ascending=False)
        shares = shares.rename(columns={"current_value": "share now", "training_value": "share at training",
                                        "previous_value": "share at previous run"})
        signed = lambda v: "" if is_missing(v) else f"{v * 100:+.1f} pts"  # noqa: E731
        parts.append("<h4>Segment shares</h4>" + table(
            shares[["segment", "share now", "share at training", "share at previous run", "change since training",
                    "change since previous run"]],
            {"share now": pct, "share at training": pct, "share at previous run": lambda v: "" if is_missing(v) else pct(v),
             "change since training": signed, "change since previous run": signed}))
    features = run[run.measure_type == "feature_psi"].sort_values("psi", ascending=False).head(5)
    if len(features):
        features = features.rename(columns={"measure_name": "feature", "psi": "PSI now", "previous_value": "PSI at previous run"})
        parts.append("<h4>Top drifting features (population stability index)</h4>" + table(
            features[["feature", "PSI now", "PSI at previous run"]],
            {"PSI now": lambda v: num(v, 3), "PSI at previous run": lambda v: "" if is_missing(v) else num(v, 3)}))
    flow = run[run.measure_type == "shopper_flow"].set_index("measure_name").current_value
    if len(flow):
        parts.append(note(f"Since the previous run: {num(flow.get('newly_scored', 0))} shoppers newly scored, "
                          f"{num(flow.get('changed_segment', 0))} changed segment, {num(flow.get('left', 0))} left "
                          f"(erased, expired or below min_events); {num(flow.get('scored', 0))} scored now."))
    return "\n".join(parts)
