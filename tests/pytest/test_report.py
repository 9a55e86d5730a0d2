"""`segments report` and segment_summary on real warehouses: the real sample, the generated demo, an empty one."""

from __future__ import annotations

import csv
import html
import re
from pathlib import Path

import duckdb
import numpy as np
import pytest

from conftest import PROJECT, Warehouse

SECTIONS = [
    "Are there segments?", "Key figures", "Events per day", "Funnel: view, cart, purchase", "Prices", "Category mix", "Missing values",
    "Outliers and rejected lines", "Features used", "Minimum-events threshold", "Preprocessing",
    "Choosing the number of segments (k)", "Model quality", "Cross-validation", "Method comparison",
]
SEGMENT_SECTIONS = ["Overview", "Segments on the principal components (PCA)", "Segment profiles",
                    "Funnel per segment", "One card per segment"]


def write_report(warehouse: Warehouse, path: Path) -> str:
    result = warehouse.segments("report", "--output", str(path), "--pca-sample", "1500")
    assert f"Segment report written to {path}" in result.stdout
    return path.read_text(encoding="utf-8")


def current_segments(warehouse: Warehouse):
    return warehouse.df(
        "select segment_id, segment_name from segment_labels "
        "where model_version = (select max(model_version) from segment_labels) order by segment_id"
    )


def assert_self_contained(text: str) -> None:
    """Readable offline: no script, stylesheet, font or image fetched from anywhere."""
    assert "<script" not in text and "<link" not in text and "@import" not in text and "url(" not in text
    assert not re.search(r'\b(src|href)="(?!#|data:)', text), "a resource outside the file"
    images = re.findall(r'<img [^>]*src="([^"]{0,40})', text)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)


@pytest.mark.parametrize("warehouse_name", ["real_warehouse", "demo_warehouse"])
def test_report_shows_every_section_and_every_segment(request, warehouse_name, tmp_path):
    warehouse = request.getfixturevalue(warehouse_name)
    text = write_report(warehouse, tmp_path / "report.html")

    assert "could not be built" not in text
    for title in SECTIONS + SEGMENT_SECTIONS:
        assert f">{html.escape(title)}</h" in text, title
    assert_self_contained(text)

    # The figures are the warehouse's, counted here independently.
    events = warehouse.scalar("select count(*) from stg_events")
    assert f'id="kpi-events">{events:,}<' in text
    segments = current_segments(warehouse)
    assert len(segments) > 0
    sizes = dict(warehouse.df(
        "select segment_id, count(*) as users from user_segments where segment_status = 'scored' group by segment_id"
    ).itertuples(index=False, name=None))
    for segment_id, name in segments.itertuples(index=False, name=None):
        card = text.split(f'id="segment-{segment_id}"')[1].split("</section>")[0]
        assert f'<span class="segment-name">{html.escape(name)}</span>' in card
        assert f"<b>{sizes.get(segment_id, 0):,}</b><span>shoppers</span>" in card
        assert "Action plan" in card and "Newsletter and promotions" in card


def test_demo_report_has_the_method_plots_and_the_timing(demo_warehouse, tmp_path):
    text = write_report(demo_warehouse, tmp_path / "report.html")
    assert "Not available" not in text  # the demo fills every table the report reads
    for alt in ["Events per day by event type", "k selection: elbow, silhouette against its null, stability",
                "PCA scatter of scored shoppers", "Segment profile heatmap", "Funnel per segment",
                "Minimum-events threshold curve"]:
        assert f'alt="{alt}"' in text, alt
    assert len(re.findall(r'alt="Distinguishing features of segment \d+"', text)) == len(current_segments(demo_warehouse))
    assert text.count("<b>Timing:</b> most active on ") == len(current_segments(demo_warehouse))


def test_report_on_an_empty_warehouse_says_what_is_missing(tmp_path):
    warehouse = Warehouse(tmp_path)
    duckdb.connect(str(warehouse.path)).close()
    text = write_report(warehouse, tmp_path / "empty.html")
    assert "could not be built" not in text
    for title in SECTIONS:
        assert f">{html.escape(title)}</h" in text
    assert text.count("Not available: table") >= len(SECTIONS) - 1
    assert "the model has not segmented anyone yet" in text


def test_segment_summary_matches_an_independent_computation(demo_warehouse):
    shoppers = demo_warehouse.df(
        "select s.segment_id, f.purchases, f.orders, f.revenue from user_segments as s "
        "inner join user_features as f on s.user_id = f.user_id where s.segment_status = 'scored'"
    )
    shoppers["revenue"] = shoppers["revenue"].fillna(0.0)
    expected = shoppers.groupby("segment_id").agg(
        users=("purchases", "size"), buyers=("purchases", lambda p: int((p > 0).sum())),
        orders=("orders", "sum"), revenue=("revenue", "sum"),
    )
    summary = demo_warehouse.df("select * from segment_summary").set_index("segment_id").sort_index()
    profiles = demo_warehouse.df("select segment_id, segment_name, marketing_action from segment_profiles")
    assert sorted(summary.index) == sorted(profiles["segment_id"])
    assert dict(zip(profiles.segment_id, profiles.segment_name)) == summary["segment_name"].to_dict()
    expected = expected.reindex(summary.index, fill_value=0)
    assert (summary["users"] == expected["users"]).all()
    assert (summary["buyers"] == expected["buyers"]).all()
    assert (summary["orders"] == expected["orders"]).all()
    np.testing.assert_allclose(summary["revenue"], expected["revenue"], rtol=1e-9)
    np.testing.assert_allclose(summary["user_share"], expected["users"] / len(shoppers), rtol=1e-9)
    np.testing.assert_allclose(summary["revenue_share"], expected["revenue"] / shoppers["revenue"].sum(), rtol=1e-9)
    np.testing.assert_allclose(summary["conversion_rate"], expected["buyers"] / expected["users"], rtol=1e-9)
    np.testing.assert_allclose(summary["avg_order_value"], expected["revenue"] / expected["orders"], rtol=1e-9)
    assert summary["user_share"].sum() == pytest.approx(1.0)


def test_label_catalogue_in_the_docs_matches_the_personas_seed():
    """The segment labels the dbt docs describe are exactly those the model can give."""
    docs = (PROJECT / "models" / "segments" / "_segments_docs.md").read_text()
    block = docs.split("{% docs segment_label_catalogue %}")[1].split("{% enddocs %}")[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in block.splitlines() if line.startswith("| ") and not line.startswith("| segment_name")]
    with open(PROJECT / "seeds" / "segment_personas.csv", newline="") as handle:
        personas = [[r["segment_name"], r["persona_key"], r["description"], r["marketing_action"]]
                    for r in csv.DictReader(handle)]
    from shopper_segments.model.naming import DESCRIPTIVE

    assert rows[:-1] == personas
    assert rows[-1][1] == DESCRIPTIVE and "strongest trait" in rows[-1][0]
