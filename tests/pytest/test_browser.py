"""What the business sees, in a real browser: the segment report and the dbt docs catalogue.

The pipeline runs on generated data (the `demo_warehouse` fixture), `segments report` writes the
report, `dbt docs generate` the catalogue; headless Chromium (Debian's `chromium`) renders both and
each segment of the current model must be named on the rendered pages, without page errors.
Outside CI a machine without Chromium skips with the reason; under CI=true it fails.
"""

from __future__ import annotations

import functools
import html
import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        message = "Chromium is not installed (apt-get install chromium chromium-driver; .ci/run does it)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def browse(chromium: str, url: str, tmp_path: Path, *extra: str) -> tuple[str, list[str]]:
    """The DOM Chromium renders for `url`, and the page errors it logged (uncaught exceptions, console errors)."""
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    result = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000", *extra, url],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines()
              if ":CONSOLE" in line and ("Uncaught" in line or "Error" in line)]
    return result.stdout, errors


@pytest.fixture(scope="module")
def docs_site(demo_warehouse):
    """The dbt docs of the demo warehouse, served over HTTP (index.html fetches manifest.json and catalog.json)."""
    demo_warehouse.segments("dbt", "--", "docs", "generate")
    site = demo_warehouse.target_dir
    assert (site / "index.html").exists() and (site / "catalog.json").exists()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def current_segment_names(warehouse) -> list[str]:
    names = warehouse.df(
        "select segment_name from segment_labels where model_version = (select max(model_version) from segment_labels)"
    )["segment_name"].tolist()
    assert names
    return names


def test_the_page_error_check_catches_errors(chromium, tmp_path):
    """The check below is not vacuous: a page that throws is reported."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><p>ok</p><script>throw new Error('broken on purpose')</script></body></html>")
    dom, errors = browse(chromium, page.as_uri(), tmp_path, "--dump-dom")
    assert "<p>ok</p>" in dom
    assert any("broken on purpose" in line for line in errors)


def test_report_renders_every_segment_in_chromium(chromium, demo_warehouse, tmp_path):
    report = tmp_path / "segment_report.html"
    demo_warehouse.segments("report", "--output", str(report))
    dom, errors = browse(chromium, report.as_uri(), tmp_path, "--dump-dom")
    assert errors == []
    assert "<h1>Shopper segments</h1>" in dom
    for name in current_segment_names(demo_warehouse):
        assert f'<span class="segment-name">{html.escape(name)}</span>' in dom, name

    # The rendered page is not blank: a screenshot of its top has text, plots and colour.
    from PIL import Image

    shot = tmp_path / "report.png"
    browse(chromium, report.as_uri(), tmp_path, "--window-size=1200,3000", f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert pixels.shape[:2] == (3000, 1200)
    assert pixels.std() > 20  # far from a uniform page
    assert (np.abs(pixels[..., 0] - pixels[..., 2]) > 60).mean() > 0.005  # the coloured plots are drawn


@pytest.mark.parametrize("model", ["segment_labels", "segment_summary", "user_segments"])
def test_dbt_docs_name_every_segment(chromium, demo_warehouse, docs_site, tmp_path, model):
    url = f"{docs_site}/index.html#!/model/model.shopper_segments.{model}"
    dom, errors = browse(chromium, url, tmp_path, "--dump-dom")
    assert errors == []
    assert f'<span class="break ng-binding">{model}</span>' in dom  # the model's page, rendered by the app
    for name in current_segment_names(demo_warehouse):
        assert f"<td>{html.escape(name)}</td>" in dom, f"{name} is not in the rendered docs of {model}"


def test_dbt_docs_overview_is_the_catalogue_front_page(chromium, docs_site, tmp_path):
    dom, errors = browse(chromium, f"{docs_site}/index.html#!/overview", tmp_path, "--dump-dom")
    assert errors == []
    for text in ["shopper-segments: the data catalogue", "Where to start (BI team)", "Refresh cadence",
                 "docs/gdpr.md", "First: are there segments at all?", "assert_segment_structure_is_clear"]:
        assert text in dom, text
