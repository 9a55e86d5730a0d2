"""Formatting for the report: numbers, HTML tables, inline PNG figures, notes, and the Jinja2 templates.

Fragments built here are escaped HTML (`esc`); the templates (templates/) autoescape everything else, so a
fragment reaches a template as `Markup` on purpose, never a plain string.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Callable

import jinja2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from markupsafe import Markup

PALETTE = plt.get_cmap("tab10").colors
TEMPLATES = Path(__file__).resolve().parent / "templates"

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    finalize=lambda value: "" if value is None else value,  # a NULL shows as nothing, as `esc` shows it
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def render_template(template: str, **context) -> Markup:
    """templates/`template` rendered with `context` (autoescaped): HTML ready to go into another template."""
    return Markup(_environment.get_template(template).render(**context))


def esc(value) -> str:
    return html.escape("" if value is None else str(value))


def is_missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def num(value, digits: int = 0) -> str:
    if is_missing(value):
        return "–"
    return f"{value:,.{digits}f}"


def pct(value, digits: int = 1) -> str:
    return "–" if is_missing(value) else f"{100 * value:.{digits}f}%"


def table(frame: pd.DataFrame, formats: dict[str, Callable] | None = None, css: str = "") -> str:
    """The frame as an HTML table; `formats` maps a column to the function that shows its values."""
    formats = formats or {}
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, row):
            shown = formats[column](value) if column in formats else ("–" if is_missing(value) else value)
            numeric = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            cells.append(f"<td{' class=num' if numeric else ''}>{esc(shown)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def figure_html(fig, alt: str) -> str:
    """The figure as an inline PNG (closed afterwards)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="plot" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'
