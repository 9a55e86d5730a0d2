"""`segments report`: what the business sees, as one self-contained HTML file.

    segments report [--output reports/segment_report.html] [--pca-sample 4000]

Reads the warehouse the dbt build filled (DuckDB by default, PostgreSQL with SEGMENTS_TARGET=postgres):
the events (staging), the features and the segment marts. Aggregations run in SQL; only small
aggregates and a bounded, deterministic sample of scored shoppers (for the PCA scatter) come into
Python. Plots are inline PNG (matplotlib, Agg), styles are inline: the file reads offline and can be
mailed as it is. A table that is missing or empty gives a short "not available" note, never a crash.

The package: `warehouse` (read-only queries), `format` (numbers, tables, figures, templates), one
module per part of the page (`drift_part`, `data_part`, `model_part`, `segments_part`), `page` (the
report's build and its file); the HTML skeleton, styles and segment cards are Jinja2 templates in
templates/.
"""

import matplotlib

matplotlib.use("Agg")  # before any module of the package draws: no display needed

from .page import Report, write_report  # noqa: E402
from .warehouse import Unavailable, Warehouse  # noqa: E402

__all__ = ["Report", "Unavailable", "Warehouse", "write_report"]
