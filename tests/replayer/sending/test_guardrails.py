"""Guardrails through real processes: a cap and a timeout per target, a slow or dead shadow.

Figures (memory, requests, back-offs) are printed; run with `-s` to see them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from replayer.consuming.merge import MERGE_LIMIT_BYTES
from replayer.results.report import read_results
from schemas.codec import Codec
from tests.replayer.consuming.test_worker import log, metrics, ready, wait_until
from tests.replayer.events import make_event, produce_events
from tests.support import Kafka, Proc, Procs, free_port, run_cli
from trafficmirror.demo.apps import Received, RecordingShadow
from trafficmirror.plumbing.kafka import KafkaSettings, results_topic

pytestmark = pytest.mark.e2e

#: The backlog of the slow/dead shadow tests: records, and the recorded response body of each.
BACKLOG = 3000
BODY = 32 * 1024
CONCURRENCY = 8
FAILED = '{result="failed"}'
#: librdkafka's prefetch queue for those tests (its default is 64 MiB, more than the backlog).
PREFETCH_KIB = 8192
PARTITIONS = 2


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


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        match = re.search(r"^VmRSS:\s+(\d+) kB", status.read(), re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@dataclass
class Scenario:
    """One worker against one kind of broken shadow, with its own topic."""

    name: str
    target: str
    args: tuple[str, ...]
    topic: str = ""
    proc: Proc | None = None
    port: int = 0
    rss_start: int = 0
    rss_peak: int = 0
    samples: list[int] = field(default_factory=list)

    def start(self, kafka: Kafka, procs: Procs) -> None:
        self.topic = kafka.new_topic(PARTITIONS)
        kafka.create_topic(results_topic(self.topic), PARTITIONS)
        self.port = free_port()
        self.proc = procs.start(
            self.name,
            [
                "worker",
                "-b",
                kafka.bootstrap_servers,
                "-t",
                self.topic,
                "-g",
                f"g-{self.topic}",
                "--target",
                self.target,
                "--metrics-port",
                str(self.port),
                "--concurrency",
                str(CONCURRENCY),
                "--drain-timeout",
                "1",
                "-X",
                f"queued.max.messages.kbytes={PREFETCH_KIB}",
                *self.args,
            ],
        )

    def sample(self) -> None:
        assert self.proc is not None
        rss = rss_kib(self.proc.popen.pid)
        self.samples.append(rss)
        self.rss_peak = max(self.rss_peak, rss)

    @property
    def growth_mib(self) -> float:
        return (self.rss_peak - self.rss_start) / 1024


def backlog(salt: int) -> list[dict[str, Any]]:
    body = os.urandom(BODY)  # incompressible, one object shared by all events
    return [
        make_event(
            path=f"/item/{n}",
            client=("10.4.0.1", 42000 + n % 50),
            response_body=body,
            exchange_id=f"b{salt}-{n}",
        )
        for n in range(BACKLOG)
    ]


def test_slow_or_dead_shadow_bounded_memory_errors_as_results_and_back_off(
    mock_kafka: Kafka, procs: Procs
) -> None:
    """Three workers at once, each with a backlog of 2,000 records of 32 KiB (64 MiB).

    `dead`: nothing listens on the port; `slow-1s`: the shadow answers in 10 s and the
    worker's --timeout is 1 s; `slow-30s`: the same shadow with the default 30 s timeout,
    so its requests are answered (after 10 s), never errors.
    """
    slow = RecordingShadow(delay=10.0)
    slow.shutdown_timeout = 0.1  # requests still sleeping at the end need not finish
    with slow:
        scenarios = [
            Scenario("dead", f"http://127.0.0.1:{free_port()}", ("--timeout", "1")),
            Scenario("slow-1s", slow.url, ("--timeout", "1")),
            Scenario("slow-30s", slow.url, ()),
        ]
        for s in scenarios:
            s.start(mock_kafka, procs)
        for s in scenarios:
            wait_until(f"{s.name} to get partitions", lambda s=s: ready(s.port), 30)
            s.sample()
            s.rss_start = s.rss_peak
        # The patient one first: it waits longest (10 s for its first answers).
        for n, s in reversed(list(enumerate(scenarios))):
            produce_events(mock_kafka.bootstrap_servers, s.topic, backlog(n))
        produced_at = time.monotonic()
        backlog_mib = BACKLOG * BODY / 2**20

        # Sample memory until the 10 s answers came back and two probes failed each.
        def done() -> bool:
            now = {s.name: metrics(s.port) for s in scenarios}
            return (
                time.monotonic() > produced_at + 9
                and metric(now["slow-30s"], "trafficmirror_replayer_sent_total") >= CONCURRENCY
                and all(
                    metric(now[name], "trafficmirror_replayer_guard_probes_total", FAILED) >= 2
                    for name in ("dead", "slow-1s")
                )
            )

        polled = 0
        while polled % 5 or not done():
            assert time.monotonic() < produced_at + 40, "the scenarios did not get there"
            for s in scenarios:
                s.sample()
            time.sleep(0.1)
            polled += 1
        texts = {s.name: metrics(s.port) for s in scenarios}
        received = slow.received
        for s in scenarios:
            assert s.proc is not None
            assert s.proc.stop() == 0, log(s.proc)

    dead, short, patient = scenarios
    figures = []
    for s in scenarios:
        text = texts[s.name]
        consumed = metric(text, "trafficmirror_replayer_consumed_total")
        figures.append(
            f"{s.name}: RSS {s.rss_start / 1024:.0f} MiB at start, peak {s.rss_peak / 1024:.0f} "
            f"MiB (+{s.growth_mib:.1f} MiB) with a {backlog_mib:.0f} MiB backlog; consumed "
            f"{consumed:.0f}, sent {metric(text, 'trafficmirror_replayer_sent_total'):.0f}, "
            f"errors {metric(text, 'trafficmirror_replayer_errors_total'):.0f}, back-offs "
            f"{metric(text, 'trafficmirror_replayer_guard_backoffs_total'):.0f}, probes failed "
            f"{metric(text, 'trafficmirror_replayer_guard_probes_total', FAILED):.0f}"
        )
    print("\n" + "\n".join(figures))

    # Memory is bounded by what is held, not by the backlog: librdkafka's prefetch queue
    # (8 MiB here, overshot by at most one 1 MiB fetch per partition) and the records in
    # flight (64 = max(8 x 4, 64), each at most three copies of its 32 KiB: the Kafka value,
    # the decoded event, the request built from it), and what the merge across partitions
    # may hold (MERGE_LIMIT_BYTES), plus a quarter for slack.
    bound_mib = (
        PREFETCH_KIB / 1024 + PARTITIONS * 1 + 64 * 3 * BODY / 2**20 + MERGE_LIMIT_BYTES / 2**20
    ) * 1.25
    for s in scenarios:
        assert s.growth_mib <= bound_mib, (s.name, s.growth_mib, bound_mib)
    assert bound_mib * 3 < backlog_mib

    # Dead and slow with a 1 s timeout: the guard tripped once and keeps probing.
    for s in (dead, short):
        text = texts[s.name]
        assert s.proc is not None
        assert metric(text, "trafficmirror_replayer_guard_backoffs_total") == 1, log(s.proc)
        assert metric(text, "trafficmirror_replayer_guard_state") in (1, 2)
        failed_probes = metric(text, "trafficmirror_replayer_guard_probes_total", FAILED)
        assert failed_probes >= 2
        consumed = metric(text, "trafficmirror_replayer_consumed_total")
        errors = metric(text, "trafficmirror_replayer_errors_total")
        # It stopped reading: what it holds (at most 64 in flight) plus the errors before
        # the trip (the 20th tripped it; at most 7 more were on the wire).
        assert 20 <= errors <= 20 + CONCURRENCY - 1
        assert consumed <= 64 + errors
        lines = log(s.proc).splitlines()
        trips = [line for line in lines if "guard: shadow errors" in line]
        assert len(trips) == 1, trips
        # One line per failed probe (one more may have failed after the metrics were read).
        logged = len([line for line in lines if "guard: probe failed" in line])
        assert logged - failed_probes in (0, 1)
        # Errors are results (outcome error), exactly one per error counted.
        found = results(mock_kafka, s.topic)
        assert len(found) == errors
        assert {r["outcome"] for r in found} == {"error"}
        if s is short:
            assert {r["error"] for r in found} == {"timeout after 1s"}
            assert "backing off" in trips[0] and "timeout after 1s" in trips[0]
        else:
            assert all("Connect" in r["error"] for r in found), found[0]["error"]
    # The slow shadow got the requests that timed out, plus one at a time for the probes
    # (the patient worker's requests are told apart by their exchange ids: b2-...).
    short_requests = [
        r for r in received if (r.header("X-Trafficmirror-Replay") or "").startswith("b1-")
    ]
    short_probes = metric(texts["slow-1s"], "trafficmirror_replayer_guard_probes_total", FAILED)
    short_errors = metric(texts["slow-1s"], "trafficmirror_replayer_errors_total")
    # (+1: a probe may have been on the wire when the metrics were read)
    assert len(short_requests) - short_errors - short_probes in (0, 1)

    # A 10 s shadow with a 30 s timeout is slow, not failing: answers, no back-off.
    text = texts["slow-30s"]
    patient_requests = [
        r for r in received if (r.header("X-Trafficmirror-Replay") or "").startswith("b2-")
    ]
    assert metric(text, "trafficmirror_replayer_guard_backoffs_total") == 0
    assert metric(text, "trafficmirror_replayer_errors_total") == 0
    assert metric(text, "trafficmirror_replayer_sent_total") == CONCURRENCY  # the first answers
    # 8 at a time: the first 8 in the first seconds, the next ones once they were answered.
    first = min(r.at for r in patient_requests)
    assert sum(r.at < first + 9 for r in patient_requests) == CONCURRENCY
    assert CONCURRENCY <= len(patient_requests) <= 2 * CONCURRENCY
    assert patient.proc is not None
    assert "guard:" not in log(patient.proc)
    assert len(results(mock_kafka, patient.topic)) == CONCURRENCY
