"""The page: which builder fills which section (the layout itself is templates/report.html.j2), and writing it."""

from __future__ import annotations

import datetime as dt
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
from markupsafe import Markup

from .. import settings
from . import data_part, drift_part, model_part, segments_part
from .format import esc, note, render_template
from .warehouse import Unavailable, Warehouse


@dataclass
class Report:
    """The report being built: what could not be built, and the segments its last sections describe."""

    warehouse: Warehouse
    pca_sample: int = 4000
    unavailable: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    no_model_reason: str | None = None  # why the model and segment parts are empty, if no version is fitted
    segments: pd.DataFrame | None = None
    segments_missing: str | None = None  # the note the segments section shows instead, when there are none

    def part(self, title: str, build: Callable[[], str]) -> Markup:
        """One part's HTML; a missing table becomes a note, an unexpected error a visible message."""
        try:
            return Markup(build())
        except Unavailable as reason:
            self.unavailable.append(title)
            why = f" {self.no_model_reason}" if self.no_model_reason else ""
            return Markup(note(f"Not available: {reason}.{why}"))
        except Exception as error:  # noqa: BLE001 - the rest of the report is still worth writing
            self.failed.append(title)
            traceback.print_exc(file=sys.stderr)
            return Markup(f'<p class="error">This part could not be built: {esc(type(error).__name__)}: '
                          f"{esc(error)}</p>")

    def load_segments(self) -> bool:
        """Read the current segments for the segment sections; False (and the reason noted) when there are none."""
        try:
            self.segments = segments_part.segment_order(self.warehouse)
            return True
        except Unavailable as reason:
            self.unavailable.append("Segments")
            self.segments_missing = (f"Not available: {reason}. {self.no_model_reason}" if self.no_model_reason
                                     else f"Not available: {reason} (the model has not segmented anyone yet).")
            return False

    @property
    def model_version(self) -> int:
        return int(self.segments["model_version"].iloc[0])


def builders(report: Report) -> dict[str, Callable[[], str]]:
    """The section builders by the name the page template calls them."""
    w = report.warehouse
    return {
        "what_changed": lambda: drift_part.what_changed(w),
        "structure_verdict": lambda: model_part.structure_verdict(w),
        "key_figures": lambda: data_part.key_figures(w),
        "daily_volumes": lambda: data_part.daily_volumes(w),
        "funnel": lambda: data_part.funnel(w),
        "prices": lambda: data_part.prices(w),
        "categories": lambda: data_part.categories(w),
        "missing_values": lambda: data_part.missing_values(w),
        "outliers": lambda: data_part.outliers(w),
        "features_used": lambda: model_part.features_used(w),
        "threshold": lambda: model_part.threshold(w),
        "preprocessing": lambda: model_part.preprocessing(w),
        "k_selection": lambda: model_part.k_selection(w),
        "model_metrics": lambda: model_part.model_metrics(w),
        "cross_validation": lambda: model_part.cross_validation(w),
        "method_comparison": lambda: model_part.method_comparison(w),
        "segments_overview": lambda: segments_part.segments_overview(w, report.segments),
        "pca_scatter": lambda: segments_part.pca_scatter(w, report.segments, report.pca_sample),
        "profile_heatmap": lambda: segments_part.profile_heatmap(segments_part.traits_frame(w), report.segments),
        "funnel_per_segment": lambda: segments_part.funnel_per_segment(segments_part.segment_journeys(w),
                                                                       report.segments),
        "segment_cards": lambda: segments_part.segment_cards(w, report.segments),
    }


def render(report: Report) -> str:
    """The whole page, building every section in the order the template lays them out."""
    report.no_model_reason = model_part.no_model_reason(report.warehouse)
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return render_template("report.html.j2", report=report, build=builders(report), generated=generated,
                           location=report.warehouse.location)


def write_report(output: Path, pca_sample: int, target: str | None = None) -> Report:
    """Build the report from the warehouse of `target` (default: the configured one) and write it to `output`."""
    warehouse = Warehouse(target or settings.target())
    report = Report(warehouse, pca_sample=pca_sample)
    try:
        html = render(report)
    finally:
        warehouse.close()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(html, encoding="utf-8")
    return report
