"""Capacity tests and CI gates through real processes: `replay range --amplify`, `report --fail-on`.

One replay serves the module: 78 exchanges recorded over 3 s in two phases
(12/s, then 36/s; 6 writes among them) on 6 client connections over the
topic's partitions, replayed by `trafficmirror replay range --amplify 3
--speed 1` (a subprocess, against the librdkafka mock cluster) to a real HTTP
shadow that timestamps what it receives. It must receive every read 3 times
(the copies marked `<id>/1`, `<id>/2`), every write once, within the
recorded span ±5 %, with the recorded shape at 3× the volume; and the
results topic holds one result per exchange (copies are not compared). The
`report` runs then gate on those results: exit 1 exactly when a budget is
exceeded, the JUnit file parsed back with ElementTree and junitparser.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import junitparser
import pytest

from tests.e2e.test_pipeline import PARTITIONS
from tests.replayer.events import flat, make_event, produce_events
from tests.support import Kafka, run_cli
from trafficmirror.demo.apps import Received, RecordingShadow, summary
from trafficmirror.demo.traffic import REPLAY_HEADER

pytestmark = pytest.mark.e2e

BASE_US = 1_767_000_000_000_000
#: (records, seconds): the recorded shape, 12/s then 36/s.
PHASES = ((18, 1.5), (54, 1.5))
#: Every 3rd record of the first phase is followed by a write 10 ms later.
WRITE_EVERY = 3
CLIENTS = 6
JSON_TYPE = "application/json; charset=utf-8"
FACTOR = 3


@dataclass
class Replayed:
    topic: str
    recorded: dict[str, tuple[int, str]]  # exchange id → (recorded start µs, method)
    received: list[Received]
    stdout: str


def _events() -> list[dict[str, object]]:
    """Reads of /items/N (recorded answer = the shadow's: match) and /orders/N (differs)."""
    events = []
    start = 0.0
    n = 0
    for count, seconds in PHASES:
        gap = seconds / count
        for i in range(count):
            at = BASE_US + round((start + i * gap) * 1e6)
            client = ("10.9.0.1", 30000 + n % CLIENTS)
            path = f"/orders/{n}" if n % 4 == 0 else f"/items/{n}"
            answer = summary("GET", path, b"")
            if path.startswith("/orders/"):  # production said more than the shadow says
                answer["version"] = "v1"
            body = json.dumps(answer).encode()
            events.append(
                make_event(path=path, request_start_us=at, client=client, response_body=body)
            )
            if start == 0.0 and i % WRITE_EVERY == 0:
                post = f"/items/{n}"
                answer = json.dumps(summary("POST", post, b"x=1")).encode()
                events.append(
                    make_event(
                        method="POST",
                        path=post,
                        body=b"x=1",
                        request_start_us=at + 10_000,
                        client=client,
                        response_body=answer,
                    )
                )
            n += 1
        start += seconds
    for event in events:  # as the shadow (aiohttp) labels its JSON
        response: Any = event["response"]
        response["message"]["headers"] = flat([("Content-Type", JSON_TYPE)])
    return events


@pytest.fixture(scope="module")
def replayed(kafka: Kafka) -> Replayed:
    topic = kafka.new_topic(PARTITIONS, prefix="e2e-amplify")
    events = _events()
    produce_events(kafka.bootstrap_servers, topic, events, spread=PARTITIONS)
    recorded = {str(e["id"]): (int(e["request_start_us"]), str(e["method"])) for e in events}  # type: ignore[call-overload]
    with RecordingShadow() as shadow:
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
                "--methods",
                "GET,POST",
                "--amplify",
                str(FACTOR),
                "--speed",
                "1",
            ],
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        received = shadow.received
    return Replayed(topic, recorded, received, result.stdout)


def test_amplify_3_sends_each_read_3_times_within_the_recorded_span(replayed: Replayed) -> None:
    reads = [i for i, (_, method) in replayed.recorded.items() if method == "GET"]
    writes = [i for i, (_, method) in replayed.recorded.items() if method == "POST"]
    assert len(reads) == sum(count for count, _ in PHASES) and len(writes) == 6
    marks: dict[str, list[str]] = defaultdict(list)
    for item in replayed.received:
        mark = item.header(REPLAY_HEADER) or ""
        marks[mark.split("/")[0]].append(mark)
    assert len(replayed.received) == FACTOR * len(reads) + len(writes)
    for exchange in reads:  # the original once, each copy once, marked with its number
        assert sorted(marks[exchange]) == [exchange, f"{exchange}/1", f"{exchange}/2"]
    for exchange in writes:  # writes are never amplified without --amplify-writes
        assert marks[exchange] == [exchange]
    copies = (FACTOR - 1) * len(reads)
    assert f"copies sent {copies}, copy errors 0" in replayed.stdout

    starts = [start for start, _ in replayed.recorded.values()]
    recorded_span = (max(starts) - min(starts)) / 1e6
    arrivals = sorted(item.at for item in replayed.received)
    span = arrivals[-1] - arrivals[0]
    assert abs(span - recorded_span) <= 0.05 * recorded_span, (span, recorded_span)

    # The shape: per half second, three times the recorded reads (a copy spread
    # within its slot may cross into the next bucket: a few either way).
    first = min(starts)
    want = Counter(
        int((start - first) / 500_000)
        for start, method in replayed.recorded.values()
        if method == "GET"
    )
    got = Counter(
        int((item.at - arrivals[0]) / 0.5) for item in replayed.received if item.method == "GET"
    )
    for bucket in sorted(want):
        expected = FACTOR * want[bucket]
        assert abs(got[bucket] - expected) <= 4 + 0.1 * expected, (bucket, got, want)


def _report(kafka: Kafka, topic: str, *args: str) -> tuple[int, str]:
    result = run_cli(["report", "-b", kafka.bootstrap_servers, "-t", topic, *args], timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout


def test_copies_are_not_compared_and_kept_budgets_exit_0(
    kafka: Kafka, replayed: Replayed, tmp_path: Path
) -> None:
    junit = tmp_path / "kept.xml"
    code, out = _report(
        kafka,
        replayed.topic,
        "--fail-on",
        "mismatch_rate>30%",
        "--fail-on",
        "error_rate>0.5%",
        "--fail-on",
        "mismatch_rate[GET /items/{id}]>0",
        "--junit",
        str(junit),
    )
    # One result per exchange: 78, of which the 18 reads of /orders/N differ.
    assert f"{len(replayed.recorded)} results:" in out, out
    assert "18 mismatch, 0 errors" in out, out
    assert code == 0, out
    assert (
        "budgets kept: mismatch_rate>30%, error_rate>0.5%, mismatch_rate[GET /items/{id}]>0" in out
    )
    root = ET.parse(junit).getroot()  # noqa: S314 (written by the test's own run)
    assert root.get("failures") == "0"


def test_exceeded_budgets_exit_1_with_a_line_each_and_junit_says_where(
    kafka: Kafka, replayed: Replayed, tmp_path: Path
) -> None:
    junit = tmp_path / "gate.xml"
    code, out = _report(
        kafka,
        replayed.topic,
        "--fail-on",
        "mismatch_rate>10%",
        "--fail-on",
        "mismatch_rate[*]>=50%",
        "--fail-on",
        "p99_ratio[GET /items/{id}]>0.000001",
        "--fail-on",
        "error_rate>0.5%",
        "--junit",
        str(junit),
    )
    assert code == 1, out
    lines = [line for line in out.splitlines() if line.startswith("budget exceeded")]
    assert [line.split(":")[1].strip() for line in lines] == [
        "mismatch_rate>10% on all endpoints",
        "mismatch_rate[*]>=50% on GET /orders/{id}",
        "p99_ratio[GET /items/{id}]>0.000001 on GET /items/{id}",
    ], out
    assert lines[0].endswith("% (18 of 78 compared)"), lines[0]

    root = ET.parse(junit).getroot()  # noqa: S314 (written by the test's own run)
    (suite,) = root.findall("testsuite")
    cases = {c.get("name"): c.find("failure") is not None for c in suite.findall("testcase")}
    assert cases == {
        "all endpoints": True,
        "GET /orders/{id}": True,
        "GET /items/{id}": True,
        "POST /items/{id}": False,
    }
    # A JUnit library reads it the same way a CI server would.
    parsed = junitparser.JUnitXml.fromfile(str(junit))
    failed = {
        case.name
        for test_suite in parsed
        for case in test_suite
        if any(isinstance(r, junitparser.Failure) for r in case.result)
    }
    assert failed == {"all endpoints", "GET /orders/{id}", "GET /items/{id}"}
