"""`segments fit`: the dbt Python models' tables, for warehouses where dbt has no Python models.

On DuckDB the Python models in `python_models/` fit the model inside `dbt build`. dbt-postgres
and dbt-redshift have no Python models, so there those models are disabled and this command
writes their tables instead, into the target schema, where the SQL models read them as the
source `fitted` (models/segments/_fitted_sources.yml). Then `dbt build` scores in SQL.

One implementation, not two: every Python model is a thin wrapper around a library function
(shopper_segments.model.training ...), and so is every entry of `FIT_TABLES`. An entry reads its inputs
through a `FitContext` (the same tables `dbt.ref` gives the Python model, the model's own config
with the project's vars), calls the library function and returns a DataFrame. The settings come
from the Python model's config in python_models/*.yml, so both paths fit with the same settings.

To add a Python model: write its library function and the thin dbt wrapper (enabled on DuckDB
only), add an entry to FIT_TABLES here and its table to the `fitted` source, and let SQL models
read it with `fitted_relation('<name>')` (macros/portability/fitted_relation.sql), not `ref()`.
Entries run in order, so an entry can read a table written by an earlier one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable

import jinja2
import numpy as np
import pandas as pd
import yaml

from .. import settings
from ..ingest import connections
from . import due, params, training
from .analyses import assignment, k_and_features, methods, threshold
from .analyses.study import StudyInputs


class FitContext:
    """What a fit entry may read: warehouse tables, the Python model's config, the retrain flag."""

    def __init__(self, con, schema: str, target_type: str, cli_vars: dict[str, Any], retrain: bool):
        self.con = con
        self.schema = schema
        self.target_type = target_type
        self.cli_vars = cli_vars
        self.retrain_flag = retrain

    def relation(self, name: str) -> str:
        return f"{connections.quote(self.schema)}.{connections.quote(name)}"

    def exists(self, name: str) -> bool:
        return connections.relation_exists(self.con, self.schema, name)

    def query(self, sql: str) -> pd.DataFrame:
        return connections.read_frame(self.con, sql)

    def ref(self, name: str) -> pd.DataFrame:
        """The whole model or seed `name`, like `dbt.ref(name).df()` in a Python model."""
        return self.query(f"select * from {self.relation(name)}")

    def rows_where_in(self, name: str, key: str, ids: np.ndarray, columns: str | None = None) -> pd.DataFrame:
        """Rows of `name` whose `key` is one of `ids`, sorted by `key` (ids go through a temp table);
        all columns, or only `columns` (a comma-separated list of names)."""
        with self.con.cursor() as cur:
            cur.execute("drop table if exists fit_chosen_ids")
            cur.execute("create temporary table fit_chosen_ids (chosen_id bigint)")
            connections.insert_rows(
                cur, "fit_chosen_ids", pd.DataFrame({"chosen_id": np.asarray(ids, dtype=np.int64)}), batch_rows=5000
            )
        quoted = connections.quote(key)
        selected = ", ".join(f"source.{connections.quote(c.strip())}" for c in columns.split(",")) if columns else "source.*"
        return self.query(
            f"select {selected} from {self.relation(name)} as source "
            f"inner join fit_chosen_ids on source.{quoted} = fit_chosen_ids.chosen_id order by source.{quoted}"
        )

    def config(self, model: str) -> dict[str, Any]:
        """The config of the Python model `model` (python_models/*.yml), vars resolved as dbt does."""
        return python_model_config(model, self.target_type, self.cli_vars)

    def retrain(self, config: dict[str, Any]) -> bool:
        return self.retrain_flag or due.retrain_requested(config.get("meta"))

    def analysed_versions(self, name: str) -> list[int]:
        """Model versions already in the analysis table `name` (none before its first write), as
        `duckdb_inputs.analysed_versions` gives the incremental Python model."""
        if not self.exists(name):
            return []
        return [int(v) for v in self.query(f"select distinct model_version from {self.relation(name)}")["model_version"]]

    def study_inputs(self) -> StudyInputs:
        """What the analyses read, lazily, like `duckdb_inputs.study_inputs` over dbt.ref()."""
        return StudyInputs(
            event_counts=lambda: self.query(f"select user_id, events from {self.relation('user_features')}"),
            fetch_features=lambda ids: self.rows_where_in("user_features", "user_id", ids),
            feature_config=self.ref("segment_features"),
        )


def project_vars(cli_vars: dict[str, Any]) -> dict[str, Any]:
    """The project's vars (dbt_project.yml) overridden by `--vars`, as dbt resolves them."""
    project = yaml.safe_load((settings.project_dir() / "dbt_project.yml").read_text())
    return {**(project.get("vars") or {}), **cli_vars}


def python_model_config(model: str, target_type: str, cli_vars: dict[str, Any]) -> dict[str, Any]:
    """Render the `config:` block of a Python model's properties with `var`, `env_var` and `target`."""
    values = project_vars(cli_vars)

    def var(name: str, default: Any = None) -> Any:
        if name in values:
            return values[name]
        if default is None:
            raise SystemExit(f"Required var {name!r} is not set (dbt_project.yml or --vars)")
        return default

    def env_var(name: str, default: str | None = None) -> str:
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise SystemExit(f"Env var {name!r} is not set")
        return default

    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    context = {"var": var, "env_var": env_var, "target": SimpleNamespace(type=target_type)}

    def render(value: Any) -> Any:
        if isinstance(value, str):
            return environment.from_string(value).render(context)
        if isinstance(value, dict):
            return {key: render(item) for key, item in value.items()}
        return value

    for path in sorted((settings.project_dir() / "python_models").glob("*.yml")):
        for entry in (yaml.safe_load(path.read_text()) or {}).get("models") or []:
            if entry.get("name") == model:
                return render(entry.get("config") or {})
    raise SystemExit(f"No Python model {model!r} in python_models/*.yml")


def fit_segment_model(ctx: FitContext) -> pd.DataFrame:
    """`segment_model` (python_models/segment_model.py) outside dbt: `training.train_new_version`.

    Same rules as the Python model: keep the current version unless retraining (or none exists);
    same deterministic sample; a retrain on unchanged inputs adds nothing (training fingerprint).
    """
    config = ctx.config("segment_model")
    fit_settings = params.FitSettings.from_model_meta(config.get("meta"))
    current = None
    if ctx.exists("segment_model"):
        relation = ctx.relation("segment_model")
        current = ctx.query(
            f"select * from {relation} where model_version = (select max(model_version) from {relation})"
        )

    def read_inputs() -> training.TrainingInputs:
        return training.TrainingInputs(
            eligible_user_ids=ctx.query(
                f"select user_id from {ctx.relation('user_features')} where events >= {fit_settings.min_events}"
            )["user_id"].to_numpy(),
            fetch_features=lambda user_ids: ctx.rows_where_in("user_features", "user_id", user_ids),
            feature_config=ctx.ref("segment_features"),
            personas=ctx.ref("segment_personas"),
            traits=ctx.ref("segment_persona_traits"),
        )

    return training.fit_if_due(current, ctx.retrain(config), fit_settings, read_inputs)


def analysis(function: Callable[..., pd.DataFrame], name: str) -> Callable[[FitContext], pd.DataFrame]:
    """An analysis Python model (python_models/<name>.py) outside dbt: `function(params, analysed, study)`
    on the same inputs, so its rows are computed once, for the latest model version not yet analysed."""

    def build(ctx: FitContext) -> pd.DataFrame:
        return function(ctx.ref("segment_model"), ctx.analysed_versions(name), ctx.study_inputs())

    build.__doc__ = f"`{name}` outside dbt: {function.__module__}.{function.__name__}."
    return build


# The columns python_models/segment_threshold_curve.py reads from stg_events.
def fit_threshold_curve(ctx: FitContext) -> pd.DataFrame:
    """`segment_threshold_curve` outside dbt: threshold.threshold_curve, with the shoppers' clean events."""
    meta = ctx.config("segment_threshold_curve")["meta"]
    return threshold.threshold_curve(
        ctx.ref("segment_model"),
        ctx.analysed_versions("segment_threshold_curve"),
        ctx.study_inputs(),
        fetch_events=lambda ids: ctx.rows_where_in("stg_events", "user_id", ids, threshold.EVENT_COLUMNS),
        marketing_calendar=ctx.ref("marketing_calendar"),
        night_hours=threshold.night_hours(meta),
    )


@dataclass(frozen=True)
class FitTable:
    """A table a dbt Python model writes on DuckDB, and `segments fit` writes elsewhere."""

    build: Callable[[FitContext], pd.DataFrame]
    # "append": new rows are added (incremental Python models, e.g. model versions);
    # "replace": the table holds only the latest result (table Python models).
    mode: str = "append"
    description: str = field(default="", compare=False)


# Table name (= Python model name) -> how to build it. Runs in this order. Extend it with each new
# Python model (see the module docstring).
FIT_TABLES: dict[str, FitTable] = {
    "segment_model": FitTable(fit_segment_model, "append", "fitted parameters, labels and metrics per version"),
    # The analyses of the latest version (they read segment_model, so they come after it).
    "segment_k_selection": FitTable(analysis(k_and_features.k_selection, "segment_k_selection"), "append",
                                    "the k scan: criteria and stability per k"),
    "segment_threshold_curve": FitTable(fit_threshold_curve, "append", "agreement against minimum events"),
    "segment_feature_analysis": FitTable(analysis(k_and_features.feature_analysis, "segment_feature_analysis"), "append",
                                         "redundancy, separation, permutation importance"),
    "segment_method_comparison": FitTable(analysis(methods.method_comparison, "segment_method_comparison"),
                                          "append", "other algorithms, feature sets, outlier handling"),
    "segment_classifier_cv": FitTable(analysis(assignment.classifier_cv, "segment_classifier_cv"), "append",
                                      "cross-validated supervised assignment"),
    "segment_rules": FitTable(analysis(assignment.segment_rules, "segment_rules"), "append",
                              "decision-tree rules per segment"),
}


def run_fit(target: str, retrain: bool = False, cli_vars: dict[str, Any] | None = None,
            tables: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, int]:
    """Build every registered table (or `tables`) on `target`; returns rows written per table."""
    profile = connections.profile_target(target)
    target_type = profile["type"]
    if target_type == "duckdb":
        raise SystemExit("On DuckDB the dbt Python models fit inside `dbt build` (`segments fit` runs them).")
    unknown = sorted(set(tables or []) - set(FIT_TABLES))
    if unknown:
        raise SystemExit(f"Unknown fit table(s) {unknown}; known: {sorted(FIT_TABLES)}")
    con = connections.connect(target)
    written: dict[str, int] = {}
    try:
        ctx = FitContext(con, profile["schema"], target_type, cli_vars or {}, retrain)
        for name, entry in FIT_TABLES.items():
            if tables and name not in tables:
                continue
            frame = entry.build(ctx)
            con.rollback()  # end the read transaction (drops nothing: temp tables live for the session)
            connections.write_frame(con, ctx.schema, name, frame, entry.mode, target_type)
            written[name] = len(frame)
            if len(frame) or entry.mode == "replace":
                log(f"  {name}: {len(frame):,} rows written ({entry.mode})")
            else:
                log(f"  {name}: unchanged (nothing new to append; `--retrain` fits a new version)")
    finally:
        con.close()
    return written


def parse_vars(text: str | None) -> dict[str, Any]:
    """`--vars` as dbt takes it: a YAML mapping."""
    if not text:
        return {}
    parsed = yaml.safe_load(text)
    if not isinstance(parsed, dict):
        raise SystemExit(f"--vars must be a YAML mapping, got {text!r}")
    return parsed

