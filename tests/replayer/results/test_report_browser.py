"""The HTML report as a person sees it: rendered by headless Chromium (Debian's `chromium`).

Three runs of the browser on the same synthetic report, and one on a report of
mirror captures (no production response):

* `--screenshot`: the page renders to a non-trivial PNG (kept in the test's
  tmp dir, or in $TRAFFICMIRROR_SCREENSHOT_DIR, to look at);
* `--dump-dom` of the report itself: the table rows and both charts are in the
  rendered DOM, and the page ran no script (it has none; its CSP forbids any);
* `--dump-dom` of a copy with a measuring script added (and the CSP taken out
  so it may run): the table and the charts have a real size on screen;
* `--dump-dom` of the mirror report: its rows show "vs baseline" and "no
  production response" counts, never mismatches, and its example compares
  the shadow with the baseline.

Skipped only when Chromium is not installed: `apt-get install -y chromium`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from replayer.comparing.responses import KINDS
from replayer.results.aggregate import Aggregate
from replayer.results.html import render_html
from tests.replayer.results.test_report import mirror_results, synthetic_results

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"
)

WIDTH, HEIGHT = 1280, 2400

MEASURE = """
<script>
const box = (el) => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
const out = {
  table: box(document.querySelector("table.endpoints")),
  rows: document.querySelectorAll("table.endpoints tbody tr").length,
  svgs: [...document.querySelectorAll("svg")].map(box),
  lines: [...document.querySelectorAll("svg polyline")].map(box),
  bars: [...document.querySelectorAll("svg rect.mismatch")].map(box),
};
const pre = document.createElement("pre");
pre.id = "measure";
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>
"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={WIDTH},{HEIGHT}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    page = render_html(
        Aggregate().add_all(synthetic_results()),
        title="trafficmirror report: traffic",
        subtitle="traffic.results",
    )
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def test_screenshot(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={shot}", report.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (WIDTH, HEIGHT)
    # A blank page compresses to a few kB; text, tables and charts do not.
    assert len(data) > 50_000
    keep = os.environ.get("TRAFFICMIRROR_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / "report.png")


def test_rendered_dom_has_the_table_and_the_charts(report: Path, tmp_path: Path) -> None:
    dom = chromium(tmp_path, "--dump-dom", report.as_uri()).stdout
    assert "<script" not in dom
    rows = re.findall(r"<tr class=\"endpoint\">.*?</tr>", dom, re.S)
    assert len(rows) == 5
    assert any("GET /users/{id}" in row and "14.5%" in row for row in rows)
    assert "all endpoints" in dom
    assert dom.count("<svg") == 2
    assert dom.count("<polyline") == 2  # production and shadow
    assert "Mismatch rate per endpoint" in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


def test_table_and_charts_have_a_size_on_screen(report: Path, tmp_path: Path) -> None:
    page = report.read_text(encoding="utf-8")
    page = re.sub(r"<meta http-equiv='Content-Security-Policy'[^>]*>", "", page)
    measured = tmp_path / "measured.html"
    measured.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = chromium(tmp_path, "--dump-dom", measured.as_uri()).stdout
    found = re.search(r'<pre id="measure">(.*?)</pre>', dom, re.S)
    assert found, "the measuring script did not run"
    sizes = json.loads(found.group(1).replace("&quot;", '"'))
    assert sizes["rows"] == 6  # five endpoints and the total
    table_w, table_h = sizes["table"]
    assert table_w > 800 and table_h > 100
    assert len(sizes["svgs"]) == 2
    for w, h in sizes["svgs"]:
        assert w > 300 and h > 100
    assert len(sizes["lines"]) == 2
    for w, h in sizes["lines"]:
        assert w > 50 and h > 50
    # Bars for every compared endpoint; the three that differ are visibly long.
    assert sum(1 for w, _ in sizes["bars"] if w > 5) == 3


def test_mirror_captures_render_as_vs_baseline_and_no_production_response(
    tmp_path: Path,
) -> None:
    # One run with a baseline (compared with it), one without (nothing to compare with).
    results = mirror_results(with_baseline=True)
    results += [dict(r, run_id="no-baseline") for r in mirror_results(with_baseline=False)]
    path = tmp_path / "mirror.html"
    path.write_text(render_html(Aggregate().add_all(results)), encoding="utf-8")
    dom = chromium(tmp_path, "--dump-dom", path.as_uri()).stdout
    assert "<script" not in dom
    assert '<th rowspan="2">vs baseline</th><th rowspan="2">no production response</th>' in dom
    rows = re.findall(r"<tr class=\"endpoint\">(.*?)</tr>", dom, re.S)
    assert len(rows) == 2
    cells = {
        re.sub(r"<.*?>", "", row.split("</td>")[0]): re.findall(r"<td[^>]*>(.*?)</td>", row)
        for row in rows
    }
    # endpoint, requests, mismatch, the kinds, noise only, errors, skipped, vs baseline, no prod
    items, prices = cells["GET /items/{id}"], cells["GET /prices/{id}"]
    vs = 6 + len(KINDS)
    assert items[1:3] == ["40", "0"] and items[vs : vs + 2] == ["20", "20"]
    assert prices[1:3] == ["20", "30.0%"] and prices[vs : vs + 2] == ["10", "10"]
    assert "<span>no production response</span>" in dom
    example = dom.split("Example differences")[1]
    assert "<th>baseline</th><th>shadow</th>" in example
    assert "status baseline 200 → shadow 200" in example
