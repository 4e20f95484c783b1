"""Shadow vs production through real processes: record, replay, compare, report.

`trafficmirror record` runs in front of production (`ShopApp` v1) while a real
client calls three endpoints. The recording is replayed with `replay range` to
a shadow (`ShopApp` v2) that differs on purpose in `/users/{id}` (a changed
JSON field), only in noise on `/clock` (a timestamp field and the Date header)
and not at all on `/items/{id}`; each scenario is a run of its own (`--run-id`):

* `plain`: no noise rule, so the timestamp counts as a mismatch too;
* `rule`: `--ignore-path '$.timestamp'`, then the same range again with the
  same rule from a rules file (at-least-once: every exchange twice);
* `baseline`: no rule, but a second copy of production (`--baseline`): the
  timestamp differs there too, so it is noise.

`trafficmirror report` (a process too) must flag only the users endpoint at
`$.name` once the noise is explained, count each exchange once, and write an
HTML report that headless Chromium renders with its table and charts.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from replayer.comparing.responses import KINDS
from tests.e2e.test_pipeline import wait_until
from tests.replayer.events import watermarks
from tests.replayer.results.test_report_browser import CHROMIUM, HEIGHT, WIDTH, chromium
from tests.support import Kafka, Procs, free_port, run_cli, wait_port
from tests.terminal import run_in_terminal
from trafficmirror.demo.apps import ShopApp
from trafficmirror.plumbing.kafka import results_topic

pytestmark = pytest.mark.e2e

PER_ENDPOINT = 10
PARTITIONS = 2
PATHS = [
    path for n in range(1, PER_ENDPOINT + 1) for path in (f"/users/{n}", "/clock", f"/items/{n}")
]
ENDPOINTS = ("GET /users/{id}", "GET /clock", "GET /items/{id}")


@dataclass
class Compared:
    topic: str
    bootstrap_servers: str
    replays: dict[str, str]  # run id → the last `replay range` output
    html: Path

    def report(self, *args: str) -> tuple[int, str]:
        result = run_cli(["report", "-b", self.bootstrap_servers, "-t", self.topic, *args])
        assert result.returncode in (0, 1), result.stderr
        assert "Traceback" not in result.stderr
        return result.returncode, result.stdout


def events_in(kafka: Kafka, topic: str) -> int:
    return sum(watermarks(kafka.bootstrap_servers, topic, p)[1] for p in range(PARTITIONS))


@pytest.fixture(scope="module")
def compared(kafka: Kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compared]:
    topic = kafka.new_topic(PARTITIONS, prefix="e2e-compare")
    kafka.create_topic(results_topic(topic), PARTITIONS)
    tmp = tmp_path_factory.mktemp("compare")
    procs = Procs(tmp)
    try:
        port = free_port()
        with ShopApp("v1") as production:
            recorder = procs.start(
                "recorder",
                [
                    "record",
                    "-b",
                    kafka.bootstrap_servers,
                    "-t",
                    topic,
                    "--upstream",
                    production.url,
                    "--listen",
                    f"127.0.0.1:{port}",
                ],
            )
            wait_port(port)
            for path in PATHS:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                    assert r.status == 200
            wait_until("events in Kafka", lambda: events_in(kafka, topic) >= len(PATHS), 30)
            assert recorder.stop() == 0, procs.dump()

        rules = tmp / "rules.toml"
        rules.write_text('ignore_paths = ["$.timestamp"]\n', encoding="utf-8")
        replays: dict[str, str] = {}
        with ShopApp("v2") as shadow, ShopApp("v1") as baseline:
            for run_id, *options in (
                ("plain",),
                ("rule", "--ignore-path", "$.timestamp"),
                ("rule", "--rules", str(rules)),  # the same range again: duplicates
                ("baseline", "--baseline", baseline.url),
            ):
                result = run_cli(
                    [
                        "replay",
                        "range",
                        "-b",
                        kafka.bootstrap_servers,
                        "-t",
                        topic,
                        "--start-offset",
                        "0",
                        "--target",
                        shadow.url,
                        "--run-id",
                        run_id,
                        "--methods",
                        "ALL",
                        *options,
                    ]
                )
                assert result.returncode == 0, result.stderr
                replays[run_id] = result.stdout
        yield Compared(topic, kafka.bootstrap_servers, replays, tmp / "report.html")
    except BaseException:
        print(procs.dump())
        raise
    finally:
        procs.close()


def table_rows(report: str) -> dict[str, list[str]]:
    """Endpoint → [requests, mismatch, status, headers, JSON, text, binary, noise, errors].

    The columns of the kinds after the five HTTP ones (gRPC messages ...) must be empty
    here, and are left out.
    """
    extra = len(KINDS) - 5
    rows = {}
    for line in report.splitlines():
        cells = line.split()
        if len(cells) > 11 + extra and f"{cells[0]} {cells[1]}" in ENDPOINTS:
            assert cells[9 : 9 + extra] == ["-"] * extra, line
            rows[f"{cells[0]} {cells[1]}"] = cells[2:9] + cells[9 + extra : 11 + extra]
    return rows


def differing_paths(report: str) -> list[str]:
    """`ENDPOINT: KIND PATH ×N` of the top differences (without their example values)."""
    _, _, section = report.partition("Most frequent differences (not noise), with example values:")
    found, endpoint = [], ""
    for line in section.splitlines()[1:]:
        if not line.strip():
            break
        if line.startswith("    "):
            found.append(f"{endpoint}: {line.strip().split(': ')[0]}")
        else:
            endpoint = line.strip()
    return found


def test_replay_summary_counts_the_comparison(compared: Compared) -> None:
    results = f"results to {results_topic(compared.topic)}: written 30, lost 0"
    assert (
        "comparison: match 10 (noise only 0), mismatch 20, errors 0, skipped 0; " + results
    ) in compared.replays["plain"]
    for run_id in ("rule", "baseline"):
        assert (
            "comparison: match 20 (noise only 10), mismatch 10, errors 0, skipped 0; " + results
        ) in compared.replays[run_id]


def test_without_a_rule_the_timestamp_is_a_mismatch(compared: Compared) -> None:
    _, out = compared.report("--run", "plain")
    rows = table_rows(out)
    assert rows["GET /clock"][:2] == ["10", "100.0%"]
    assert "GET /clock: JSON $.timestamp ×10" in differing_paths(out)


@pytest.mark.parametrize("run_id", ["rule", "baseline"])
def test_only_the_changed_endpoint_is_flagged(compared: Compared, run_id: str) -> None:
    code, out = compared.report("--run", run_id, "--since", "-15m", "--fail-on-mismatch")
    assert code == 1  # something differs: a CI gate fails
    rows = table_rows(out)
    assert rows["GET /users/{id}"] == ["10", "100.0%", "-", "-", "100.0%", "-", "-", "-", "-"]
    assert rows["GET /clock"] == ["10", "-", "-", "-", "-", "-", "-", "10", "-"]
    assert rows["GET /items/{id}"] == ["10", "-", "-", "-", "-", "-", "-", "-", "-"]
    assert differing_paths(out) == ["GET /users/{id}: JSON $.name ×10"]
    duplicates = 30 if run_id == "rule" else 0
    assert (
        f"30 results: 20 match (10 only in noise), 10 mismatch, 0 errors, 0 skipped; "
        f"{duplicates} duplicate deliveries ignored"
    ) in out


def test_runs_combined_and_time_window(compared: Compared) -> None:
    _, out = compared.report()
    assert "results of several runs are combined" in out
    assert "90 results" in out and "30 duplicate deliveries ignored" in out
    _, out = compared.report("--until", "-1h")
    assert "no results" in out


def test_terminal_report_shows_values_skipped_and_colour(
    compared: Compared, tmp_path: Path
) -> None:
    _, out = compared.report("--run", "rule")
    # The values of the top difference, production → shadow, as the HTML shows them.
    assert re.search(r'^    JSON \$\.name ×10: "user (\d+)" → "USER \1"$', out, re.M), out
    header = out.splitlines()[0].split()
    assert header[header.index("ERR") + 1] == "SKIP"
    assert "\x1b[" not in out  # a pipe: no colour
    args = ["report", "-b", compared.bootstrap_servers, "-t", compared.topic, "--run", "rule"]
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TRAFFICMIRROR_COLOR")}
    code, shown, err = run_in_terminal(args, env=env)
    assert code == 0 and "\x1b[31m" in shown, err
    code, shown, err = run_in_terminal(args, env=dict(env, NO_COLOR="1"))
    assert code == 0 and "\x1b[" not in shown and "JSON $.name ×10" in shown, err
    # Every run combined: the HTML says so as the terminal does.
    html = tmp_path / "combined.html"
    _, out = compared.report("--html", str(html), "--color", "always")  # colour into a pipe
    assert "note: results of several runs are combined" in out and "\x1b[31m" in out
    assert "<p class='note'>note: results of several runs are combined: " in html.read_text()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_html_report_renders_in_a_browser(compared: Compared, tmp_path: Path) -> None:
    code, out = compared.report("--run", "rule", "--html", str(compared.html))
    assert code == 0 and f"HTML report written to {compared.html}" in out

    shot = tmp_path / "compare-report.png"
    chromium(tmp_path, f"--screenshot={shot}", compared.html.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (WIDTH, HEIGHT)
    assert len(data) > 30_000  # a blank page is a few kB
    keep = os.environ.get("TRAFFICMIRROR_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / shot.name)

    dom = chromium(tmp_path, "--dump-dom", compared.html.as_uri()).stdout
    rows = re.findall(r'<tr class="endpoint">(.*?)</tr>', dom, re.S)
    cells = {
        re.sub(r"<.*?>", "", row.split("</td>")[0]): re.findall(r"<td[^>]*>(.*?)</td>", row)
        for row in rows
    }
    assert set(cells) == set(ENDPOINTS)
    assert cells["GET /users/{id}"][1:3] == ["10", "100.0%"]
    assert cells["GET /clock"][1:3] == ["10", "0"]
    assert cells["GET /clock"][3 + len(KINDS)] == "10"  # noise only
    assert dom.count("<svg") == 2 and dom.count("<polyline") == 2  # production and shadow
    assert "Mismatch rate per endpoint" in dom
    examples = dom.partition("Example differences")[2]
    assert "$.name" in examples and "$.timestamp" not in examples
    # Side by side: production's value, then the shadow's.
    assert re.search(r'<pre>"user (\d+)"</pre></td><td class="s"><pre>"USER \1"</pre>', examples)
