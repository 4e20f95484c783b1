"""One clock for a group: `session start`, `session set`, `session stop` drive running workers.

Two `worker` processes share a 4-partition topic. `session start --speed 1`
anchors the clock; the recorded exchanges (40 ms apart, over 8 connections,
so both workers hold some) arrive at the shadow 40 ms apart. `session set
--speed 3` while they replay: from the agreed switch moment on, the gaps are a
third, and every request of both workers lands on the one piecewise clock the
two revisions define. `session stop` puts the workers back to live replay.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from typing import Any

import pytest

from replayer.sessions.store import read_session
from tests.replayer.consuming.test_worker import log, metrics, ready, start_worker, wait_until
from tests.replayer.events import make_event, produce_events
from tests.support import Kafka, Proc, Procs, run_cli
from trafficmirror.demo.apps import Received, RecordingShadow
from trafficmirror.plumbing.kafka import KafkaSettings

pytestmark = pytest.mark.e2e

T0 = 1_760_000_000_000_000  # anchor of the recording (µs)
GAP_US = 40_000
COUNT = 150
FAST = 3.0


def exchanges(count: int, first_us: int, gap_us: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        make_event(
            path=f"/s/{seq}",
            headers=[("Host", "shop"), ("X-Seq", str(seq))],
            client=("10.2.0.1", 41000 + seq % 8),
            request_start_us=first_us + (seq - start) * gap_us,
        )
        for seq in range(start, start + count)
    ]


def session(kafka: Kafka, topic: str, group: str, *args: str) -> str:
    result = run_cli(
        ["session", args[0], "-b", kafka.bootstrap_servers, "-t", topic, "-g", group, *args[1:]],
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def median_gap_ms(arrivals: list[float]) -> float:
    return statistics.median(b - a for a, b in zip(arrivals, arrivals[1:], strict=False)) * 1e3


def wait_applied(workers: list[tuple[Proc, int]], revision: int) -> None:
    """Until every worker applies the revision: records that reach a worker before its
    session does are replayed at the worker's own pace (live)."""
    wanted = f"trafficmirror_replayer_session_revision {revision:.1f}"
    for _, port in workers:
        wait_until(
            f"revision {revision} on every worker", lambda p=port: wanted in metrics(p), timeout=5
        )  # type: ignore[misc]


def seq(item: Received) -> int:
    return int(item.header("X-Seq") or -1)


def test_session_set_changes_the_pace_of_a_running_group(kafka: Kafka, procs: Procs) -> None:
    topic = kafka.new_topic(4)
    group = f"g-{topic}"
    settings = KafkaSettings(kafka.bootstrap_servers)
    with RecordingShadow() as shadow:
        workers = [start_worker(procs, kafka, topic, group, shadow, f"w{i}") for i in (1, 2)]
        for _, port in workers:
            wait_until("both workers to hold partitions", lambda p=port: ready(p))  # type: ignore[misc]
        since = dt.datetime.fromtimestamp(T0 / 1e6, dt.UTC).isoformat()
        session(kafka, topic, group, "start", "--speed", "1", "--since", since)
        started = read_session(settings, topic, group)
        assert started is not None and started.anchor_us == T0
        wait_applied(workers, 1)
        # Recorded 1 s after the anchor: due 1 s after the session starts.
        produce_events(kafka.bootstrap_servers, topic, exchanges(COUNT, T0 + 1_000_000, GAP_US))

        wait_until("the replay at speed 1", lambda: len(shadow.received) >= 40, timeout=20)
        asked = time.time()
        session(kafka, topic, group, "set", "--speed", str(FAST))
        changed = read_session(settings, topic, group)
        assert changed is not None and changed.revision == 2
        switch = changed.start_at_us / 1e6
        # Every worker switches one second (the default lead) after the record was written.
        assert changed.start_at_us - changed.created_at_us == 1_000_000
        assert asked < switch < asked + 5
        wait_until("every exchange", lambda: len(shadow.received) >= COUNT, timeout=30)
        wait_applied(workers, 2)

        session(kafka, topic, group, "stop")
        # Recorded an hour later: under any session clock due far in the future,
        # live they go out as they arrive.
        stopped = time.time()
        produce_events(
            kafka.bootstrap_servers, topic, exchanges(5, T0 + 3_600_000_000, GAP_US, start=COUNT)
        )
        wait_until("live replay after stop", lambda: len(shadow.received) >= COUNT + 5, timeout=10)
        live_delay = max(r.at for r in shadow.received if seq(r) >= COUNT) - stopped
        for proc, _ in workers:
            assert proc.stop() == 0, log(proc)
        received = [r for r in shadow.received if seq(r) < COUNT]

    assert sorted(map(seq, received)) == list(range(COUNT)), "lost or duplicated exchanges"
    assert live_delay < 3.0
    per_worker = [
        int(log(p).split("worker stopped: consumed ")[1].split(",")[0]) for p, _ in workers
    ]
    assert all(per_worker) and sum(per_worker) == COUNT + 5, per_worker

    # Both workers, one clock: each request arrived when the session said it was due.
    def due(item: Received) -> float:
        recorded = T0 + 1_000_000 + seq(item) * GAP_US
        revision = changed if recorded >= changed.anchor_us else started
        value = revision.due_us(recorded)
        assert value is not None
        return value / 1e6

    lateness_ms = sorted((r.at - due(r)) * 1e3 for r in received)
    early = [
        (seq(r), round(r.at - started.start_at_us / 1e6, 3), round((r.at - due(r)) * 1e3, 1))
        for r in received
        if r.at - due(r) < -0.002
    ]
    assert lateness_ms[0] > -2.0, ("sent before it was due", early, started, changed)
    on_time = sum(1 for late in lateness_ms if late < 20.0) / len(lateness_ms)
    assert on_time >= 0.9, lateness_ms

    arrivals = sorted(r.at for r in received)
    before = [t for t in arrivals if t < switch - 0.05]
    after = [t for t in arrivals if t > switch + 0.05]
    assert len(before) >= 30 and len(after) >= 30, (len(before), len(after))
    slow, fast = median_gap_ms(before), median_gap_ms(after)
    p50, p90 = lateness_ms[len(lateness_ms) // 2], lateness_ms[len(lateness_ms) * 9 // 10]
    print(
        f"median gap {slow:.1f} ms before, {fast:.1f} ms after the switch; lateness p50 "
        f"{p50:.1f} ms, p90 {p90:.1f} ms, max {lateness_ms[-1]:.1f} ms; per worker {per_worker}"
    )
    assert abs(slow - GAP_US / 1e3) <= max(5.0, 0.05 * GAP_US / 1e3), slow
    assert abs(fast - GAP_US / 1e3 / FAST) <= 5.0, fast


def test_a_session_since_until_replays_exactly_its_window_again(kafka: Kafka, procs: Procs) -> None:
    """Workers that replayed everything live go back to the window, replay it, and only it."""
    topic = kafka.new_topic(4)
    group = f"g-{topic}"
    gap = 10_000
    with RecordingShadow() as shadow:
        workers = [start_worker(procs, kafka, topic, group, shadow, f"w{i}") for i in (1, 2)]
        for _, port in workers:
            wait_until("both workers to hold partitions", lambda p=port: ready(p))  # type: ignore[misc]
        produce_events(kafka.bootstrap_servers, topic, exchanges(60, T0, gap))
        wait_until("the live replay", lambda: len(shadow.received) >= 60)
        time.sleep(0.5)  # a duplicate would arrive now
        assert len(shadow.received) == 60

        def iso(us: int) -> str:
            return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).isoformat()

        session(
            kafka,
            topic,
            group,
            "start",
            "--speed",
            "2",
            "--since",
            iso(T0 + 30 * gap),
            "--until",
            iso(T0 + 50 * gap),
        )
        started = read_session(KafkaSettings(kafka.bootstrap_servers), topic, group)
        assert started is not None
        wait_until("the window", lambda: len(shadow.received) >= 80, timeout=20)
        time.sleep(1.0)  # anything outside the window would arrive now
        again = shadow.received[60:]

        session(kafka, topic, group, "stop")
        stopped = time.monotonic()
        # Records that arrive while the window is still in effect are judged by it.
        wait_until(
            "both workers to end the session",
            lambda: all("ended: replaying records as they arrive" in log(p) for p, _ in workers),
            timeout=5,
        )
        assert time.monotonic() - stopped < 1.5
        produce_events(
            kafka.bootstrap_servers, topic, exchanges(4, T0 + 3_600_000_000, gap, start=60)
        )
        wait_until("live replay after stop", lambda: len(shadow.received) >= 84, timeout=10)
        time.sleep(0.5)
        after = shadow.received[80:]
        for proc, _ in workers:
            assert proc.stop() == 0, log(proc)

    assert sorted(map(seq, again)) == list(range(30, 50))
    # On the session's clock at speed 2: exchange 30 was due at the start, each next 5 ms on.
    # Never early (sent live they would be 2 s early); how late depends on the machine's load,
    # the pace itself is measured precisely by the test above.
    lateness_ms = sorted(
        (r.at - (started.start_at_us + (seq(r) - 30) * gap / 2) / 1e6) * 1e3 for r in again
    )
    assert lateness_ms[0] > -2.0 and lateness_ms[len(lateness_ms) // 2] < 100.0, lateness_ms
    assert sorted(map(seq, after)) == [60, 61, 62, 63]  # live again; the rest was not re-sent
    moved = [
        line
        for p, _ in workers
        for line in log(p).splitlines()
        if "replay session: partitions moved to" in line
    ]
    assert len(moved) == 2, moved


def test_session_set_rate_changes_the_rate_of_the_whole_group(kafka: Kafka, procs: Procs) -> None:
    """The group rate is split by partition share: two workers together hold it."""
    topic = kafka.new_topic(4)
    group = f"g-{topic}"
    settings = KafkaSettings(kafka.bootstrap_servers)
    with RecordingShadow() as shadow:
        workers = [start_worker(procs, kafka, topic, group, shadow, f"w{i}") for i in (1, 2)]
        for _, port in workers:
            wait_until("both workers to hold partitions", lambda p=port: ready(p))  # type: ignore[misc]
        session(kafka, topic, group, "start", "--speed", "max", "--rate", "40", "--lead", "1")
        started = read_session(settings, topic, group)
        assert started is not None
        wait_applied(workers, 1)
        # 50 per partition, so both workers have work until the end: the group holds
        # the rate only while each worker has something to send at its share.
        events = exchanges(200, T0, 1000)
        for partition in range(4):
            produce_events(
                kafka.bootstrap_servers, topic, events[partition::4], partition=partition
            )
        wait_until("some of the replay", lambda: len(shadow.received) >= 60, timeout=20)
        session(kafka, topic, group, "set", "--rate", "120")
        changed = read_session(settings, topic, group)
        assert changed is not None and changed.rate == 120.0 and changed.speed is None
        wait_until("every exchange", lambda: len(shadow.received) >= 200, timeout=20)
        for proc, _ in workers:
            assert proc.stop() == 0, log(proc)
        arrivals = sorted(r.at for r in shadow.received)

    switch = changed.start_at_us / 1e6

    def rate(since: float, until: float) -> float:
        return sum(1 for t in arrivals if since <= t < until) / (until - since)

    # Leave out the first second (each worker's bucket starts with a burst of 2).
    slow = rate(started.start_at_us / 1e6 + 1.0, switch - 0.1)
    # Up to the last 10: one worker may finish a few records before the other.
    fast = rate(switch + 0.1, arrivals[-10])
    print(f"group rate {slow:.1f}/s at --rate 40, {fast:.1f}/s after session set --rate 120")
    assert slow == pytest.approx(40, rel=0.1), slow
    assert fast == pytest.approx(120, rel=0.1), fast


def test_a_worker_joining_during_a_window_session_takes_over_without_replaying_twice(
    kafka: Kafka, procs: Procs
) -> None:
    """Only the worker that saw the session arrive moves back; the newcomer goes on from the
    offsets it committed there, on the same clock."""
    topic = kafka.new_topic(4)
    group = f"g-{topic}"
    gap = 20_000
    with RecordingShadow() as shadow:
        first, first_port = start_worker(procs, kafka, topic, group, shadow, "w1")
        wait_until("the first worker to hold partitions", lambda: ready(first_port))
        produce_events(kafka.bootstrap_servers, topic, exchanges(60, T0, gap))
        wait_until("the live replay", lambda: len(shadow.received) >= 60)
        since = dt.datetime.fromtimestamp((T0 + 20 * gap) / 1e6, dt.UTC).isoformat()
        # 40 exchanges, 0.8 s of recording, at 0.05x: 16 s, long enough for a second worker
        # to start and be given partitions half-way even on a loaded machine (seen taking
        # 11 s from its start under a parallel test run; 4 s of window was too short).
        session(kafka, topic, group, "start", "--speed", "0.05", "--since", since)
        second, second_port = start_worker(procs, kafka, topic, group, shadow, "w2")
        wait_until("the second worker to hold partitions", lambda: ready(second_port))
        joined = len(shadow.received) - 60
        wait_until("the window", lambda: len(shadow.received) >= 100, timeout=40)
        time.sleep(1.0)  # a duplicate would arrive now
        again = shadow.received[60:]
        for proc in (first, second):
            assert proc.stop() == 0, log(proc)

    print(f"second worker joined after {joined} of the window's 40")
    assert 0 < joined < 40, joined  # the second worker joined while the window replayed
    assert sorted(map(seq, again)) == list(range(20, 60))
    assert log(first).count("replay session: partitions moved to") == 1
    assert "partitions moved to" not in log(second)
    assert "revoked partitions" in log(first)
    sent = [
        int(log(p).split("worker stopped: consumed ")[1].split("sent ")[1].split(",")[0])
        for p in (first, second)
    ]
    assert sent[1] > 0, sent  # the newcomer replayed part of the window
