"""nginx `mirror` → `record --mirror` → `replay range` → shadow, with and without a baseline.

Debian's nginx serves live clients from production (`ShopApp` v1) and mirrors
every request to `trafficmirror record --mirror` (`tests/nginx.py`: the
configuration the docs show). The clients must get production's answers only;
the recorder records each request with no production response. `replay range`
then sends the recording to a shadow (`ShopApp` v2: a regression at
`/users/{id}` `$.name`, and at `/clock` a timestamp that differs on every
call), as two runs:

* `vs-baseline`: with `--baseline` (a second `ShopApp` v1) and `--ignore-path
  '$.timestamp'` (with the baseline as the reference, no second copy of
  production is left to tell the clock's noise, so a rule must): only the
  users endpoint differs, every compared row is counted vs baseline, and
  `report --fail-on-mismatch` fails;
* `no-baseline`: nothing to compare with: every result says "no production
  response", with the shadow's status and latency, nothing is a mismatch, and
  `report --fail-on-mismatch` passes.

`report` runs as a process too; its HTML report is rendered by headless
Chromium when it is installed.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from replayer.comparing.responses import KINDS
from tests.e2e.test_pipeline import wait_until
from tests.nginx import mirror_site, nginx
from tests.recorder.helpers import read_events
from tests.replayer.events import watermarks
from tests.replayer.results.test_report_browser import CHROMIUM, chromium
from tests.support import Kafka, Procs, free_port, run_cli, wait_port
from trafficmirror.demo.apps import ShopApp
from trafficmirror.plumbing.kafka import results_topic

pytestmark = pytest.mark.e2e

PER_ENDPOINT = 8
PARTITIONS = 2
PATHS = [
    path for n in range(1, PER_ENDPOINT + 1) for path in (f"/users/{n}", "/clock", f"/items/{n}")
]
ENDPOINTS = ("GET /users/{id}", "GET /clock", "GET /items/{id}")


@dataclass
class Chain:
    topic: str
    bootstrap_servers: str
    answers: list[tuple[int, dict[str, Any]]]  # what the live clients got, in order
    events: list[dict[str, Any]]
    replays: dict[str, str]  # run id → `replay range` output
    html: Path

    def report(self, *args: str) -> tuple[int, str]:
        result = run_cli(["report", "-b", self.bootstrap_servers, "-t", self.topic, *args])
        assert result.returncode in (0, 1), result.stderr
        assert "Traceback" not in result.stderr
        return result.returncode, result.stdout


def events_in(kafka: Kafka, topic: str) -> int:
    return sum(watermarks(kafka.bootstrap_servers, topic, p)[1] for p in range(PARTITIONS))


@pytest.fixture(scope="module")
def chain(kafka: Kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    topic = kafka.new_topic(PARTITIONS, prefix="e2e-mirror")
    kafka.create_topic(results_topic(topic), PARTITIONS)
    tmp = tmp_path_factory.mktemp("mirror-chain")
    procs = Procs(tmp)
    try:
        recorder_port, nginx_port = free_port(), free_port()
        recorder = procs.start(
            "recorder",
            [
                "record",
                "--mirror",
                "--listen",
                f"127.0.0.1:{recorder_port}",
                "-b",
                kafka.bootstrap_servers,
                "-t",
                topic,
            ],
        )
        wait_port(recorder_port)
        answers = []
        with (
            ShopApp("v1") as production,
            nginx(mirror_site(nginx_port, production.port, recorder_port), tmp),
        ):
            for path in PATHS:
                url = f"http://127.0.0.1:{nginx_port}{path}"
                with urllib.request.urlopen(url, timeout=10) as r:
                    answers.append((r.status, json.loads(r.read())))
            wait_until(
                "every mirrored request in Kafka", lambda: events_in(kafka, topic) >= len(PATHS), 30
            )
        assert recorder.stop() == 0, procs.dump()
        events = [event for _, event in read_events(kafka.bootstrap_servers, topic, len(PATHS))]

        replays: dict[str, str] = {}
        with ShopApp("v2") as shadow, ShopApp("v1") as baseline:
            for run_id, *options in (
                ("vs-baseline", "--baseline", baseline.url, "--ignore-path", "$.timestamp"),
                ("no-baseline",),
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
                        *options,
                    ]
                )
                assert result.returncode == 0, result.stdout + result.stderr
                replays[run_id] = result.stdout
        yield Chain(topic, kafka.bootstrap_servers, answers, events, replays, tmp / "report.html")
    except BaseException:
        print(procs.dump())
        raise
    finally:
        procs.close()


def table_rows(report: str) -> dict[str, list[str]]:
    """Endpoint → [requests, mismatch, status, headers, JSON, text, binary, noise, errors,
    skipped, vs baseline, no production response].

    The columns of the kinds after the five HTTP ones (gRPC messages ...) must be empty
    here, and are left out.
    """
    extra = len(KINDS) - 5
    rows = {}
    for line in report.splitlines():
        cells = line.split()
        if len(cells) > 14 + extra and f"{cells[0]} {cells[1]}" in ENDPOINTS:
            assert cells[9 : 9 + extra] == ["-"] * extra, line
            rows[f"{cells[0]} {cells[1]}"] = cells[2:9] + cells[9 + extra : 14 + extra]
    return rows


def test_live_clients_get_production_answers_and_every_request_is_recorded(chain: Chain) -> None:
    # Production's answers (v1: lower-case names), never the recorder's empty 200.
    assert [status for status, _ in chain.answers] == [200] * len(PATHS)
    users = [doc for doc in (doc for _, doc in chain.answers) if "email" in doc]
    assert [doc["name"] for doc in users] == [f"user {n}" for n in range(1, PER_ENDPOINT + 1)]
    # Every request, once, as a mirror capture with no production response.
    assert sorted(e["path"].decode() for e in chain.events) == sorted(PATHS)
    for event in chain.events:
        assert event["recorder"]["capture"] == "mirror"
        assert event["response"] is None and event["error"] is None
        assert event["method"] == "GET"


def test_replay_summaries_count_mirror_captures(chain: Chain) -> None:
    total = len(PATHS)
    results = f"results to {results_topic(chain.topic)}: written {total}, lost 0"
    users = PER_ENDPOINT
    assert f"sent {total} (no production response {total})" in chain.replays["vs-baseline"]
    assert (
        f"comparison: match {total - users} (noise only {PER_ENDPOINT}), mismatch {users}, "
        f"errors 0, skipped 0; vs baseline {total} (mirror captures, in match and mismatch); "
        + results
    ) in chain.replays["vs-baseline"]
    assert (
        "comparison: match 0 (noise only 0), mismatch 0, errors 0, skipped 0, "
        f"no production response {total}; " + results
    ) in chain.replays["no-baseline"]


def test_compared_with_the_baseline_only_the_changed_endpoint_differs(chain: Chain) -> None:
    code, out = chain.report("--run", "vs-baseline", "--fail-on-mismatch")
    assert code == 1, out  # a real difference, vs the baseline: the CI gate fails
    rows = table_rows(out)
    n = str(PER_ENDPOINT)
    # requests, mismatch, status, headers, JSON, text, binary, noise, errors, skipped,
    # vs base, no prod
    users = [n, "100.0%", "-", "-", "100.0%", "-", "-", "-", "-", "-", n, "-"]
    assert rows["GET /users/{id}"] == users
    assert rows["GET /clock"] == [n, "-", "-", "-", "-", "-", "-", n, "-", "-", n, "-"]
    assert rows["GET /items/{id}"] == [n, "-", "-", "-", "-", "-", "-", "-", "-", "-", n, "-"]
    assert re.search(r"^ *GET /users/\{id\}\n    JSON \$\.name ×" + n + ": ", out, re.M), out
    total = len(PATHS)
    assert (
        f"{total} results: {total - PER_ENDPOINT} match ({PER_ENDPOINT} only in noise), "
        f"{PER_ENDPOINT} mismatch, 0 errors, 0 skipped; {total} of match and mismatch "
        "compared vs baseline; 0 duplicate deliveries ignored"
    ) in out


def test_without_a_baseline_the_rows_say_no_production_response(chain: Chain) -> None:
    code, out = chain.report("--run", "no-baseline", "--fail-on-mismatch")
    assert code == 0, out  # nothing was compared: nothing can fail the gate
    rows = table_rows(out)
    n = str(PER_ENDPOINT)
    for endpoint in ENDPOINTS:
        assert rows[endpoint] == [n, "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", n], endpoint
    assert "Most frequent differences" not in out
    total = len(PATHS)
    assert (
        f"{total} results: 0 match (0 only in noise), 0 mismatch, 0 errors, 0 skipped, "
        f"{total} no production response (not compared); 0 duplicate deliveries ignored"
    ) in out


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_html_report_shows_both_kinds_of_rows(chain: Chain, tmp_path: Path) -> None:
    code, out = chain.report("--html", str(chain.html))
    assert code == 0 and "results of several runs are combined" in out
    dom = chromium(tmp_path, "--dump-dom", chain.html.as_uri()).stdout
    assert "<script" not in dom
    assert "<span>compared vs baseline</span>" in dom
    assert "<span>no production response</span>" in dom
    example = dom.split("Example differences")[1]
    assert "GET /users/" in example and "<th>baseline</th><th>shadow</th>" in example
    # The baseline's value where production's would be, the shadow's beside it.
    assert re.search(r'"user (\d+)".*?"USER \1"', example, re.S), example[:2000]
