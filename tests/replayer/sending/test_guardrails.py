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
from tests.replayer.consuming.test_worker import log, metrics, ready, wait_until
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
    trips = [line for line in lines if "guard: the shadow is unreachable" in line]
    failed = [line for line in lines if "guard: probe failed" in line]
    resumed = [line for line in lines if "guard: shadow answered the probe" in line]
    assert (len(trips), len(resumed)) == (1, 1), err
    assert len(failed) == 1  # the probe at +1 s was refused, the one 2 s later answered
    assert after < 2 + 1.5, after  # the next probe was due 2 s after the failed one
    # A refused connection never reached the shadow: the first one tripped the guard at
    # once, and those requests were held and sent later, not counted as errors.
    assert "total: consumed 300, sent 300, errors 0," in out, out
    assert proc.returncode == 0, err
    # Nothing lost or skipped: every record reached the shadow, exactly once.
    ids = [r.header("X-Trafficmirror-Replay") for r in received]
    assert len(ids) == len(set(ids)) == count
    found = results(kafka, topic)
    assert len(found) == count
    # Each with the shadow's answer (it answers unlike the recorded app: a mismatch).
    assert {(r["outcome"], r["shadow_status"]) for r in found} == {("mismatch", 200)}
    assert sorted(r["id"] for r in found) == sorted(f"r-{n}" for n in range(count))


def test_worker_started_while_the_shadow_is_down_holds_every_record_until_it_answers(
    kafka: Kafka, procs: Procs
) -> None:
    """A worker's shadow is down when it starts and until the first probe failed.

    No request reached it, so none is a result and nothing is committed past them;
    once it answers, every record gets exactly one result, with its answer.
    """
    topic = kafka.new_topic(2)
    kafka.create_topic(results_topic(topic), 2)
    count = 400
    events = [
        make_event(path=f"/{n}", exchange_id=f"w-{n}", client=("10.6.0.1", 44000 + n % 8))
        for n in range(count)
    ]
    port, metrics_port = free_port(), free_port()
    group = f"g-{topic}"
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
            group,
            "--target",
            f"http://127.0.0.1:{port}",
            "--metrics-port",
            str(metrics_port),
        ],
    )
    wait_until("the worker", lambda: ready(metrics_port), 30)
    produce_events(kafka.bootstrap_servers, topic, events)
    wait_until("the first failed probe", lambda: "guard: probe failed" in log(worker), 30)
    held = committed(kafka, topic, group)
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
    print(
        "\nworker: "
        + next(
            line.partition("guard: shadow")[2] for line in lines if "guard: shadow answered" in line
        )
    )
    # While the shadow was down nothing was committed: every record was held.
    assert held == {0: None, 1: None} or all(o in (None, 0) for o in held.values()), held
    assert metric(text, "trafficmirror_replayer_guard_backoffs_total") == 1
    assert metric(text, "trafficmirror_replayer_guard_state") == 0  # sending again
    assert metric(text, "trafficmirror_replayer_guard_probes_total", '{result="ok"}') == 1
    assert metric(text, "trafficmirror_replayer_errors_total") == 0
    assert metric(text, "trafficmirror_replayer_guard_unreached_total") >= 1
    # The partitions were paused while it backed off, and resumed after.
    paused = [n for n, line in enumerate(lines) if "pausing [0, 1]" in line]
    resumed = [n for n, line in enumerate(lines) if "resuming [0, 1]" in line]
    trip = next(n for n, line in enumerate(lines) if "guard: the shadow is unreachable" in line)
    back = next(n for n, line in enumerate(lines) if "guard: shadow answered" in line)
    assert any(trip < n < back for n in paused) and any(n > back for n in resumed)
    # At least once, and here exactly once: nothing skipped, nothing sent twice.
    ids = [r.header("X-Trafficmirror-Replay") for r in received]
    assert len(ids) == len(set(ids)) == count
    # Everything committed: the positions of both partitions add up to the whole topic.
    done = re.search(r"committed 0@(\d+), 1@(\d+)", log(worker))
    assert done is not None, log(worker)
    assert int(done.group(1)) + int(done.group(2)) == count
    # One result per record, each with the shadow's answer; none is an error.
    found = results(kafka, topic)
    assert sorted(r["id"] for r in found) == sorted(f"w-{n}" for n in range(count))
    assert {(r["outcome"], r["shadow_status"]) for r in found} == {("mismatch", 200)}


def committed(kafka: Kafka, topic: str, group: str) -> dict[int, int | None]:
    """The group's committed offset per partition (None: none yet)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": group})
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in parts}


def test_replay_range_gives_up_on_a_shadow_that_stays_down(kafka: Kafka) -> None:
    """--give-up-after: the range ends with exit 1 and a summary; no record became an error."""
    topic = kafka.new_topic(1)
    kafka.create_topic(results_topic(topic), 1)
    produce_events(kafka.bootstrap_servers, topic, [make_event(path=f"/{n}") for n in range(20)])
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
            f"http://127.0.0.1:{free_port()}",
            "--speed",
            "max",
            "--give-up-after",
            "1.5",
        ],
        timeout=60,
    )
    took = time.monotonic() - started
    print(f"\nrange gave up after {took:.1f}s (with start-up)")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "guard: the shadow is unreachable" in result.stderr
    assert "(--give-up-after); giving up" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "trafficmirror: stopped: the shadow did not answer for 1.5s (--give-up-after); "
        "about 20 records of the range were not replayed"
    )
    assert "total: consumed 20, sent 0, errors 0," in result.stdout
    assert took < 15
    assert results(kafka, topic) == []  # held records are not results: replay them again
