"""A slow or dead shadow through real workers: bounded memory, errors as results, back-off.

A dead shadow (connection refused) gives no results at all: its requests are held.

Figures (memory, requests, back-offs) are printed; run with `-s` to see them.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from replayer.consuming.merge import MERGE_LIMIT_BYTES
from tests.replayer.consuming.test_worker import log, metrics, ready, wait_until
from tests.replayer.events import make_event, produce_events
from tests.replayer.sending.test_guardrails import metric, results
from tests.support import Kafka, Proc, Procs, free_port
from trafficmirror.demo.apps import RecordingShadow
from trafficmirror.plumbing.kafka import results_topic

pytestmark = pytest.mark.e2e

#: The backlog of the slow/dead shadow tests: records, and the recorded response body of each.
BACKLOG = 3000
BODY = 32 * 1024
CONCURRENCY = 8
FAILED = '{result="failed"}'
#: librdkafka's prefetch queue for those tests (its default is 64 MiB, more than the backlog).
PREFETCH_KIB = 8192
PARTITIONS = 2


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        match = re.search(r"^VmRSS:\s+(\d+) kB", status.read(), re.MULTILINE)
    assert match is not None
    return int(match.group(1))


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
                "--start-from",  # the records are produced first
                "earliest",
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

    `dead`: nothing listens on the port (no request reaches it, so none is a result);
    `slow-1s`: the shadow answers in 10 s and the worker's --timeout is 1 s; `slow-30s`:
    the same shadow with the default 30 s timeout, so its requests are answered (after
    10 s), never errors.
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
        lines = log(s.proc).splitlines()
        # One line per failed probe (one more may have failed after the metrics were read).
        logged = len([line for line in lines if "guard: probe failed" in line])
        assert logged - failed_probes in (0, 1)
        found = results(mock_kafka, s.topic)
        if s is dead:
            # Nothing reached the shadow: the first refused connection tripped the guard,
            # and no request is a result (each waits to be sent once the shadow answers).
            trips = [line for line in lines if "guard: the shadow is unreachable" in line]
            assert len(trips) == 1 and "ConnectionRefusedError" in trips[0], trips
            assert errors == 0 and found == []
            assert consumed <= 64
            assert metric(text, "trafficmirror_replayer_guard_unreached_total") >= 1
            continue
        # It stopped reading: what it holds (at most 64 in flight) plus the errors before
        # the trip (the 20th tripped it; at most 7 more were on the wire).
        assert 20 <= errors <= 20 + CONCURRENCY - 1
        assert consumed <= 64 + errors
        trips = [line for line in lines if "guard: shadow errors" in line]
        assert len(trips) == 1, trips
        # Errors are results (outcome error), exactly one per error counted.
        assert len(found) == errors
        assert {r["outcome"] for r in found} == {"error"}
        assert {r["error"] for r in found} == {"timeout after 1s"}
        assert "backing off" in trips[0] and "timeout after 1s" in trips[0]
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
