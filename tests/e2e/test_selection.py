"""Choosing what to replay, through real processes: time windows, methods, filters, samples.

The recorder test records three bursts with pauses between them and replays
(and inspects) the middle one by time: exactly its exchanges reach the shadow.
The others produce events with known timestamps, methods and connections
straight into the broker (the recorder's key and timestamp conventions) and
check what a real shadow receives and what the summary counts.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import re
import time
import urllib.request
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.replayer.events import make_event, produce_events
from tests.support import Kafka, Procs, free_port, run_cli, wait_port
from trafficmirror.demo.apps import Received, RecordingShadow, SampleApp

pytestmark = pytest.mark.e2e

BASE_US = 1_760_000_000_000_000


def replay(kafka: Kafka, topic: str, target: str, *args: str) -> Any:
    """`replay range` as fast as it goes: these exchanges are minutes apart."""
    return run_cli(
        [
            "replay",
            "range",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            topic,
            "--target",
            target,
            "--speed",
            "max",
            *args,
        ],
        timeout=60,
    )


def iso(seconds: float) -> str:
    """A Unix time as ISO 8601 in UTC, to the microsecond."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()


def tags(received: list[Received]) -> list[str]:
    return sorted(r.header("X-Tag") or "?" for r in received)


def counts(stdout: str) -> dict[str, int]:
    """The summary's `total:` line as {name: number}."""
    line = next(ln for ln in stdout.splitlines() if ln.startswith("total: "))
    return {m[1]: int(m[2]) for m in re.finditer(r"([a-z-]+) (\d+)", line)}


# ---------------------------------------------------------------- time window


def test_since_until_pick_the_middle_burst_of_a_recording(kafka: Kafka, procs: Procs) -> None:
    topic = kafka.new_topic(2)
    port = free_port()
    pauses: list[float] = []
    with SampleApp() as app:
        recorder = procs.start(
            "recorder",
            ["record", "-b", kafka.bootstrap_servers, "-t", topic, "--upstream", app.url,
             "--listen", f"127.0.0.1:{port}"],
        )  # fmt: skip
        wait_port(port, timeout=20)
        for burst in "abc":
            if burst != "a":
                time.sleep(0.4)
                pauses.append(time.time())  # nothing is being sent now
                time.sleep(0.4)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for n in range(6):
                # Two connections per burst: they may land in different partitions.
                if n == 3:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", f"/{burst}/{n}", headers={"X-Tag": f"{burst}{n}"})
                conn.getresponse().read()
            conn.close()
        assert recorder.stop() == 0, recorder.stderr
    since, until = iso(pauses[0]), iso(pauses[1])
    with RecordingShadow() as shadow:
        result = replay(kafka, topic, shadow.url, "--since", since, "--until", until)
        assert result.returncode == 0, result.stderr
        middle = tags(shadow.received)
        only_until = replay(kafka, topic, shadow.url, "--until", since)
        assert only_until.returncode == 0, only_until.stderr
        first = tags(shadow.received[len(middle) :])
    assert middle == [f"b{n}" for n in range(6)]
    assert first == [f"a{n}" for n in range(6)]
    total = counts(result.stdout)
    assert (total["consumed"], total["sent"], total["skipped-outside-window"]) == (18, 6, 12)

    shown = run_cli(["inspect", "-b", kafka.bootstrap_servers, "-t", topic,
                     "--since", since, "--until", until])  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    paths = sorted(json.loads(line)["path"] for line in shown.stdout.splitlines())
    assert paths == [f"/b/{n}" for n in range(6)]


def test_a_window_reads_only_its_part_of_a_long_partition(kafka: Kafka) -> None:
    """100 exchanges 10 s apart: the spans found by time hold the window and the margin."""
    topic = kafka.new_topic(1)
    events = [
        make_event(path=f"/{n}", headers=[("Host", "h"), ("X-Tag", f"{n:03}")],
                   request_start_us=BASE_US + n * 10_000_000)
        for n in range(100)
    ]  # fmt: skip
    produce_events(kafka.bootstrap_servers, topic, events, partition=0)
    base = BASE_US / 1e6
    with RecordingShadow() as shadow:
        # [300 s, 600 s): exchanges 30..59; the 60 s margin reads 24..65.
        result = replay(kafka, topic, shadow.url, "--since", iso(base + 300),
                        "--until", iso(base + 600))  # fmt: skip
        assert result.returncode == 0, result.stderr
        received = tags(shadow.received)
    assert received == [f"{n:03}" for n in range(30, 60)]
    assert "partition 0: offsets 24..65: sent 30" in result.stdout
    assert counts(result.stdout)["skipped-outside-window"] == 12

    later = replay(kafka, topic, "http://127.0.0.1:9", "--since", iso(base + 5000))
    assert later.returncode == 0, later.stderr
    assert "nothing to replay" in later.stdout


def test_a_slow_request_written_after_later_ones_is_still_in_its_window(kafka: Kafka) -> None:
    """Write order is response order: a request that started just before --until
    but took 5 s sits behind ones that started after it; it belongs to the window."""
    topic = kafka.new_topic(1)
    starts = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 6.5, 13, 14]  # seconds; 6.5 finished late
    events = [
        make_event(path=f"/{i}", headers=[("Host", "h"), ("X-Tag", f"{t:g}")],
                   request_start_us=BASE_US + int(t * 1_000_000))
        for i, t in enumerate(starts)
    ]  # fmt: skip
    produce_events(kafka.bootstrap_servers, topic, events, partition=0)
    base = BASE_US / 1e6
    with RecordingShadow() as shadow:
        result = replay(kafka, topic, shadow.url, "--since", iso(base + 3),
                        "--until", iso(base + 7))  # fmt: skip
        assert result.returncode == 0, result.stderr
        received = tags(shadow.received)
    assert received == sorted(["3", "4", "5", "6", "6.5"])


def test_at_the_recorded_pace_the_window_starts_at_once(kafka: Kafka) -> None:
    """The margin's records before --since are dropped, never scheduled: the first
    exchange in the window anchors the clock, so no 30 s wait comes first."""
    topic = kafka.new_topic(1)
    starts = [-30, -20, -10, 0, 1, 2, 10, 20]  # seconds; the window is [0, 2.5)
    events = [
        make_event(path=f"/{t}", headers=[("Host", "h"), ("X-Tag", f"{t}")],
                   request_start_us=BASE_US + t * 1_000_000)
        for t in starts
    ]  # fmt: skip
    produce_events(kafka.bootstrap_servers, topic, events, partition=0)
    base = BASE_US / 1e6
    with RecordingShadow() as shadow:
        started = time.time()
        result = run_cli(
            ["replay", "range", "-b", kafka.bootstrap_servers, "-t", topic, "--target",
             shadow.url, "--speed", "1", "--since", iso(base), "--until", iso(base + 2.5)],
            timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        received = shadow.received
    assert tags(received) == ["0", "1", "2"]
    took = received[-1].at - received[0].at
    assert 1.9 <= took <= 2.5, took  # the recorded 2 s between first and last
    # Anchored at the margin's first record, the first request would wait 30 s;
    # what is left is the process start (a few seconds on a loaded machine).
    assert received[0].at - started < 15, received[0].at - started
    assert counts(result.stdout)["skipped-outside-window"] == 5


# ---------------------------------------------------------------- methods, filter


def mixed() -> list[dict[str, Any]]:
    """GET/HEAD/OPTIONS/POST/PUT/DELETE on /api and /static, one connection each."""
    events = []
    for n, (method, path) in enumerate(
        (m, p)
        for p in ("/api/items", "/static/app.js")
        for m in ("GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE")
    ):
        body = b'{"n": 1}' if method in ("POST", "PUT") else b""
        headers = [("Host", "shop.example.com"), ("X-Tag", f"{method} {path}")]
        if body:
            headers.append(("Content-Length", str(len(body))))
        events.append(make_event(method=method, path=path, body=body, headers=headers,
                                 client=("10.1.0.1", 30000 + n)))  # fmt: skip
    return events


def test_methods_and_filter_drop_what_they_should_and_count_it(kafka: Kafka) -> None:
    topic = kafka.new_topic(2)
    produce_events(kafka.bootstrap_servers, topic, mixed())
    with RecordingShadow() as shadow:
        default = replay(kafka, topic, shadow.url, "--start-offset", "0")
        assert default.returncode == 0, default.stderr
        safe = tags(shadow.received)
        seen = len(shadow.received)
        filtered = replay(kafka, topic, shadow.url, "--start-offset", "0", "--methods", "ALL",
                          "--filter", "~u /api & !~m HEAD")  # fmt: skip
        assert filtered.returncode == 0, filtered.stderr
        api = tags(shadow.received[seen:])
        seen = len(shadow.received)
        writes = replay(kafka, topic, shadow.url, "--start-offset", "0", "--methods",
                        "post,delete", "--filter", "~m POST | ~u static")  # fmt: skip
        assert writes.returncode == 0, writes.stderr
        both = tags(shadow.received[seen:])
    assert safe == sorted(f"{m} {p}" for m in ("GET", "HEAD", "OPTIONS")
                          for p in ("/api/items", "/static/app.js"))  # fmt: skip
    assert counts(default.stdout) == {
        "consumed": 12, "sent": 6, "errors": 0, "skipped-truncated": 0, "skipped-method": 6,
        "undecodable": 0,
    }  # fmt: skip
    assert api == sorted(f"{m} /api/items" for m in ("GET", "OPTIONS", "POST", "PUT", "DELETE"))
    assert counts(filtered.stdout)["skipped-filter"] == 7
    assert "skipped-method" not in counts(filtered.stdout)
    # methods first (POST, DELETE), then the filter among them
    assert both == ["DELETE /static/app.js", "POST /api/items", "POST /static/app.js"]
    assert counts(writes.stdout)["skipped-method"] == 8
    assert counts(writes.stdout)["skipped-filter"] == 1


def test_worker_applies_methods_and_filter_and_exports_the_counts(
    kafka: Kafka, procs: Procs
) -> None:
    topic = kafka.new_topic(1)
    produce_events(kafka.bootstrap_servers, topic, mixed())
    port = free_port()
    with RecordingShadow() as shadow:
        worker = procs.start(
            "worker",
            ["worker", "-b", kafka.bootstrap_servers, "-t", topic, "--group", f"g-{topic}",
             "--start-from", "earliest",
             "--target", shadow.url, "--metrics-port", str(port), "--filter", "~u /api"],
        )  # fmt: skip
        shadow.wait_for(3, timeout=30)
        deadline = time.monotonic() + 20
        while True:
            text = metrics(port)
            skipped = {
                m[1]: float(m[2])
                for m in re.finditer(
                    r'trafficmirror_replayer_skipped_total\{reason="([a-z-]+)"\} ([0-9.]+)', text
                )
            }
            if skipped.get("method", 0) + skipped.get("filter", 0) >= 9:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
        assert worker.stop() == 0
        received = tags(shadow.received)
    assert received == sorted(f"{m} /api/items" for m in ("GET", "HEAD", "OPTIONS"))
    assert skipped["method"] == 6 and skipped["filter"] == 3
    # Dropped records count as handled: the group committed past all 12.
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": f"g-{topic}"})
    try:
        (committed,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        consumer.close()
    assert committed.offset == 12


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        return str(response.read().decode())


# ---------------------------------------------------------------- sample


def test_sample_picks_the_same_connections_every_run_and_in_a_worker(
    kafka: Kafka, procs: Procs
) -> None:
    topic = kafka.new_topic(4)
    events = [
        make_event(path=f"/c{c}/{n}", client=("10.2.0.1", 20000 + c),
                   headers=[("Host", "h"), ("X-Tag", f"{c}")])
        for c in range(40)
        for n in range(3)
    ]  # fmt: skip
    produce_events(kafka.bootstrap_servers, topic, events)
    runs = []
    with RecordingShadow() as shadow:
        for _ in range(2):
            seen = len(shadow.received)
            result = replay(kafka, topic, shadow.url, "--start-offset", "0", "--sample", "25")
            assert result.returncode == 0, result.stderr
            runs.append(shadow.received[seen:])
            total = counts(result.stdout)
            assert total["sent"] + total["skipped-sample"] == 120
        seen = len(shadow.received)
        procs.start(
            "worker",
            ["worker", "-b", kafka.bootstrap_servers, "-t", topic, "--group", f"g-{topic}",
             "--start-from", "earliest",
             "--target", shadow.url, "--sample", "25"],
        )  # fmt: skip
        in_worker = shadow.wait_for(seen + len(runs[0]), timeout=30)[seen:]
        time.sleep(0.5)  # more than the sample would arrive now
        in_worker = shadow.received[seen:]
    first, second = ({r.header("X-Tag") for r in run} for run in runs)
    assert first == second == {r.header("X-Tag") for r in in_worker}
    assert 3 <= len(first) <= 20  # 25 % of 40 connections, not none, not all
    # Each kept connection with all three of its requests.
    assert sorted(r.path for r in runs[0]) == sorted(f"/c{c}/{n}" for c in first for n in range(3))
    assert len(in_worker) == len(runs[0])


# ---------------------------------------------------------------- recorder


def test_record_filter_records_only_matching_flows(kafka: Kafka, procs: Procs) -> None:
    from tests.recorder.helpers import read_events

    topic = kafka.new_topic(1)
    port = free_port()
    with SampleApp() as app:
        recorder = procs.start(
            "recorder",
            ["record", "-b", kafka.bootstrap_servers, "-t", topic, "--upstream", app.url,
             "--listen", f"127.0.0.1:{port}", "--filter", "~u /api & !~m DELETE"],
        )  # fmt: skip
        wait_port(port, timeout=20)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for method, path in (("GET", "/api/a"), ("GET", "/other"), ("DELETE", "/api/b"),
                             ("POST", "/api/c"), ("GET", "/static/x")):  # fmt: skip
            conn.request(method, path, body=b"x" if method == "POST" else None)
            response = conn.getresponse()
            response.read()
            assert response.status == 200  # every request is proxied as usual
        conn.close()
        assert recorder.stop() == 0, recorder.stderr
    events = read_events(kafka.bootstrap_servers, topic, 10, timeout=3)
    assert sorted((e["method"], e["path"]) for _, e in events) == [
        ("GET", b"/api/a"),
        ("POST", b"/api/c"),
    ]
    assert "recorded=2 dropped=0 failed=0" in recorder.stderr
    assert "filtered=3" in recorder.stderr
