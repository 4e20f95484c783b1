"""Guardrails through real processes: a cap and a timeout per target, backing off and resuming.

Three slow or dead shadows at once, and the memory a worker holds meanwhile, are
in test_guard_memory.py. Figures are printed; run with `-s` to see them.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from replayer.results.report import read_results
from schemas.codec import Codec
from tests.replayer.consuming.test_worker import log, metrics, wait_until
from tests.replayer.events import make_event, produce_events
from tests.support import Kafka, Procs, free_port, run_cli
from trafficmirror.demo.apps import Received, RecordingShadow
from trafficmirror.plumbing.kafka import KafkaSettings, results_topic

pytestmark = pytest.mark.e2e


def results(kafka: Kafka, topic: str) -> list[dict[str, Any]]:
    codec = Codec("replay_result")
    return [codec.decode(v) for v in read_results(KafkaSettings(kafka.bootstrap_servers), topic)]


def peak_concurrency(intervals: Iterable[tuple[float, float]]) -> int:
    """Most intervals [start, end) open at one moment."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    open_now = peak = 0
    for _, step in edges:  # at a tie an end (-1) sorts first: it freed the slot
        open_now += step
        peak = max(peak, open_now)
    return peak


def spans(received: list[Received], seconds: float) -> list[tuple[float, float]]:
    """When each request was open on the shadow's side, as [arrival, arrival + seconds).

    50 ms shorter: the client's clock for its timeout starts before the arrival.
    """
    return [(r.at, r.at + seconds - 0.05) for r in received]


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_shadow_and_baseline_each_have_their_own_cap_and_timeout(kafka: Kafka) -> None:
    """Both answer in 1 s; the baseline has 2 slots and a 0.5 s timeout, the shadow 4 and 30 s."""
    topic = kafka.new_topic(1)
    kafka.create_topic(results_topic(topic), 1)
    produce_events(
        kafka.bootstrap_servers,
        topic,
        [make_event(path=f"/{n}", client=("10.3.0.1", 41000 + n)) for n in range(12)],
    )
    with RecordingShadow(delay=1.0) as shadow, RecordingShadow(delay=1.0) as baseline:
        baseline.shutdown_timeout = 0.1
        started = time.monotonic()
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
                "--baseline",
                baseline.url,
                "--concurrency",
                "4",
                "--baseline-concurrency",
                "2",
                "--baseline-timeout",
                "0.5",
            ]
        )
        took = time.monotonic() - started
        to_shadow, to_baseline = shadow.received, baseline.received
    assert result.returncode == 0, result.stderr
    assert len(to_shadow) == 12 and len(to_baseline) == 12
    # The shadow's requests take their full second (no timeout at 0.5 s), 4 at a time.
    shadow_peak = peak_concurrency(spans(to_shadow, 1.0))
    # The baseline's give up after 0.5 s, 2 at a time.
    baseline_peak = peak_concurrency(spans(to_baseline, 0.5))
    both_peak = peak_concurrency(spans(to_shadow, 1.0) + spans(to_baseline, 0.5))
    print(
        f"\nper-target caps: shadow peak {shadow_peak}, baseline peak {baseline_peak}, "
        f"both {both_peak}; 12 records in {took:.1f}s"
    )
    assert (shadow_peak, baseline_peak) == (4, 2)
    assert both_peak == 6  # more than either cap: they are not shared
    found = results(kafka, topic)
    assert len(found) == 12
    assert {r["outcome"] for r in found} <= {"match", "mismatch"}  # the shadow answered
    assert all(r["baseline"]["error"] == "timeout after 0.5s" for r in found), found[0]
    assert "guard:" not in result.stderr  # baseline timeouts are not the shadow's errors


def test_replay_range_backs_off_from_a_dead_shadow_and_resumes_losing_nothing(
    kafka: Kafka, tmp_path: Path
) -> None:
    """The shadow's port is closed until the first probe failed, then it comes up."""

    topic = kafka.new_topic(1)
    kafka.create_topic(results_topic(topic), 1)
    count = 300
    events = [
        make_event(path=f"/{n}", exchange_id=f"r-{n}", client=("10.5.0.1", 43000 + n % 6))
        for n in range(count)
    ]
    produce_events(kafka.bootstrap_servers, topic, events)
    port = free_port()
    err_file = tmp_path / "range.err"
    with open(err_file, "w") as err_out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trafficmirror",
                "replay",
                "range",
                "-b",
                kafka.bootstrap_servers,
                "-t",
                topic,
                "--start-offset",
                "0",
                "--target",
                f"http://127.0.0.1:{port}",
                "--concurrency",
                "4",
            ],
            stdout=subprocess.PIPE,
            stderr=err_out,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    try:
        wait_until("the first failed probe", lambda: "guard: probe failed" in err_file.read_text())
        up = time.monotonic()
        with RecordingShadow(port=port) as shadow:
            out, _ = proc.communicate(timeout=30)
            after = time.monotonic() - up
            received = shadow.received
    finally:
        proc.kill()
        proc.wait()
    err = err_file.read_text()
    total = next(line for line in out.splitlines() if line.startswith("total:"))
    print(f"\nrange: finished {after:.1f}s after the shadow came up; {total}")
    print("\n".join(line for line in err.splitlines() if "guard:" in line))
    assert "Traceback" not in err
    lines = err.splitlines()
    trips = [line for line in lines if "guard: shadow errors" in line]
    failed = [line for line in lines if "guard: probe failed" in line]
    resumed = [line for line in lines if "guard: shadow answered the probe" in line]
    assert (len(trips), len(resumed)) == (1, 1), err
    assert len(failed) == 1  # the probe at +1 s was refused, the one 2 s later answered
    assert after < 2 + 1.5, after  # the next probe was due 2 s after the failed one
    # Errors only from before the trip: the 20th tripped it, 3 more were on the wire.
    errors = int(out.split("total: consumed 300, sent ")[1].split(", errors ")[1].split(",")[0])
    assert 20 <= errors <= 23, out
    assert proc.returncode == 1  # those errors make the range incomplete
    # Nothing lost or skipped: every other record reached the shadow, exactly once.
    ids = [r.header("X-Trafficmirror-Replay") for r in received]
    assert len(ids) == len(set(ids)) == count - errors
    found = results(kafka, topic)
    assert len(found) == count
    failed_ids = {r["id"] for r in found if r["outcome"] == "error"}
    assert len(failed_ids) == errors and failed_ids.isdisjoint(ids)


def test_worker_pauses_while_backing_off_and_resumes_when_the_shadow_is_back(
    kafka: Kafka, procs: Procs
) -> None:
    """A worker's shadow is down until the first probe failed: every record is replayed."""
    topic = kafka.new_topic(2)
    kafka.create_topic(results_topic(topic), 2)
    count = 400
    events = [
        make_event(path=f"/{n}", exchange_id=f"w-{n}", client=("10.6.0.1", 44000 + n % 8))
        for n in range(count)
    ]
    produce_events(kafka.bootstrap_servers, topic, events)
    port, metrics_port = free_port(), free_port()
    worker = procs.start(
        "worker",
        [
            "-v",
            "worker",
            "--start-from",  # the records are produced first
            "earliest",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            topic,
            "-g",
            f"g-{topic}",
            "--target",
            f"http://127.0.0.1:{port}",
            "--metrics-port",
            str(metrics_port),
            "--concurrency",
            "4",
        ],
    )
    wait_until("the first failed probe", lambda: "guard: probe failed" in log(worker), 30)
    with RecordingShadow(port=port) as shadow:
        wait_until(
            "every record handled",
            lambda: (
                metric(metrics(metrics_port), "trafficmirror_replayer_sent_total")
                + metric(metrics(metrics_port), "trafficmirror_replayer_errors_total")
                >= count
            ),
            30,
        )
        text = metrics(metrics_port)
        assert worker.stop() == 0, log(worker)
        received = shadow.received
    lines = log(worker).splitlines()
    errors = metric(text, "trafficmirror_replayer_errors_total")
    print(
        f"\nworker: errors {errors:.0f}, then "
        + next(
            line.partition("guard: shadow")[2] for line in lines if "guard: shadow answered" in line
        )
    )
    assert metric(text, "trafficmirror_replayer_guard_backoffs_total") == 1
    assert metric(text, "trafficmirror_replayer_guard_state") == 0  # sending again
    assert metric(text, "trafficmirror_replayer_guard_probes_total", '{result="ok"}') == 1
    assert 20 <= errors <= 23
    # The partitions were paused while it backed off, and resumed after.
    paused = [n for n, line in enumerate(lines) if "pausing [0, 1]" in line]
    resumed = [n for n, line in enumerate(lines) if "resuming [0, 1]" in line]
    trip = next(n for n, line in enumerate(lines) if "guard: shadow errors" in line)
    back = next(n for n, line in enumerate(lines) if "guard: shadow answered" in line)
    assert any(trip < n < back for n in paused) and any(n > back for n in resumed)
    # At least once, and here exactly once: nothing skipped, nothing sent twice.
    ids = [r.header("X-Trafficmirror-Replay") for r in received]
    assert len(ids) == len(set(ids)) == count - errors
    # Everything committed: the positions of both partitions add up to the whole topic.
    committed = re.search(r"committed 0@(\d+), 1@(\d+)", log(worker))
    assert committed is not None, log(worker)
    assert int(committed.group(1)) + int(committed.group(2)) == count
    found = results(kafka, topic)
    assert len(found) == count
    assert len({r["id"] for r in found if r["outcome"] == "error"} | set(ids)) == count
