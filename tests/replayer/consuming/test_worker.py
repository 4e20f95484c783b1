"""`trafficmirror worker` processes in a consumer group: exactly once, in order, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from replayer.consuming.startfrom import EARLIEST, StartFrom
from replayer.consuming.worker import WorkerConfig, run_worker
from replayer.models import Response
from replayer.selecting.selector import SelectOptions
from replayer.sending.sender import MockTransport, OutgoingRequest
from tests.replayer.events import make_event, produce_events, watermarks
from tests.support import Kafka, Proc, Procs, free_port, run_cli
from trafficmirror.demo.apps import Received, RecordingShadow
from trafficmirror.plumbing.kafka import KafkaSettings, results_topic

pytestmark = pytest.mark.e2e

CONNECTIONS = 6


def traffic(count: int, start: int = 0) -> list[dict[str, Any]]:
    """`count` events over CONNECTIONS client connections, numbered from `start`."""
    events = []
    for seq in range(start, start + count):
        conn = seq % CONNECTIONS
        events.append(
            make_event(
                method="PUT" if seq % 3 == 0 else "GET",
                path=f"/c{conn}/{seq}?x=1",
                headers=[("Host", "shop"), ("X-Conn", str(conn)), ("X-Seq", str(seq))],
                body=str(seq).encode() * 3 if seq % 3 == 0 else b"",
                client=("10.1.1.1", 30000 + conn),
            )
        )
    return events


def wait_until(what: str, condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        return str(response.read().decode())


def start_worker(
    procs: Procs,
    kafka: Kafka,
    topic: str,
    group: str,
    shadow: RecordingShadow,
    name: str,
    *extra: str,
) -> tuple[Proc, int]:
    port = free_port()
    proc = procs.start(
        name,
        [
            "worker",
            "--start-from",  # the records are produced first
            "earliest",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            topic,
            "--group",
            group,
            "--target",
            shadow.url,
            "--metrics-port",
            str(port),
            "--methods",
            "ALL",
            *extra,
        ],
    )
    return proc, port


def log(proc: Proc) -> str:
    """The process's stderr, also after `stop()` closed the file."""
    return (proc.log_dir / f"{proc.name}.err").read_text(errors="replace")


def check_exactly_once_in_order(received: list[Received], expected: range) -> None:
    seqs = [int(r.header("X-Seq") or -1) for r in received]
    assert sorted(seqs) == list(expected), f"duplicates or losses: {sorted(seqs)}"
    per_conn: dict[str, list[int]] = defaultdict(list)
    for item in received:
        per_conn[item.header("X-Conn") or "?"].append(int(item.header("X-Seq") or -1))
    for conn, order in per_conn.items():
        assert order == sorted(order), f"connection {conn} out of order: {order}"


def test_two_workers_share_the_topic_exactly_once_in_order(kafka: Kafka, procs: Procs) -> None:
    """The second worker joins mid-stream: the first must hand over what it finished."""
    topic = kafka.new_topic(4)
    group = f"g-{topic}"
    with RecordingShadow() as shadow:
        first, first_port = start_worker(
            procs, kafka, topic, group, shadow, "w1", "--concurrency", "4"
        )
        wait_until("the first worker to get partitions", lambda: ready(first_port))
        produce_events(kafka.bootstrap_servers, topic, traffic(60))
        wait_until("the first half", lambda: len(shadow.received) >= 60)
        second, second_port = start_worker(
            procs, kafka, topic, group, shadow, "w2", "--concurrency", "4"
        )
        wait_until("the second worker to get partitions", lambda: ready(second_port))
        produce_events(kafka.bootstrap_servers, topic, traffic(60, start=60))
        wait_until("the second half", lambda: len(shadow.received) >= 120)
        time.sleep(1.0)  # duplicates, if any, would arrive now
        text = metrics(second_port)
        assert "trafficmirror_replayer_sent_total" in text
        assert "trafficmirror_replayer_assigned_partitions" in text
        for proc in (first, second):
            assert proc.stop() == 0, log(proc)
        received = shadow.received
    check_exactly_once_in_order(received, range(120))
    assert "revoked partitions" in log(first)
    by_worker = [
        int(log(p).split("worker stopped: consumed ")[1].split(",")[0]) for p in (first, second)
    ]
    assert sum(by_worker) == 120 and all(by_worker), by_worker


def test_sigterm_drains_commits_and_a_restart_does_not_replay_again(
    kafka: Kafka, procs: Procs
) -> None:
    topic = kafka.new_topic(2)
    group = f"g-{topic}"
    produce_events(kafka.bootstrap_servers, topic, traffic(40), raw=[(0, b"garbage")])
    with RecordingShadow(delay=0.05) as shadow:
        worker, _ = start_worker(procs, kafka, topic, group, shadow, "w1")
        # Stop while requests are in flight: the slow shadow keeps each connection busy.
        wait_until("some requests", lambda: len(shadow.received) >= 5)
        assert worker.stop(30) == 0  # SIGTERM, then wait
        assert "draining" in log(worker)
        summary = [line for line in log(worker).splitlines() if "worker stopped:" in line]
        assert len(summary) == 1, log(worker)
        # In-flight requests finished before the exit, none was abandoned.
        assert "abandoned" not in log(worker)

        again, port = start_worker(procs, kafka, topic, group, shadow, "w2")
        wait_until("the restarted worker", lambda: ready(port))
        produce_events(kafka.bootstrap_servers, topic, traffic(20, start=40))
        wait_until("the new records", lambda: len(shadow.received) >= 60)
        time.sleep(1.0)
        assert again.stop() == 0
        received = shadow.received
    check_exactly_once_in_order(received, range(60))
    # The garbage record was counted once, by one of the two runs, and not read again.
    total_undecodable = sum(
        int(log(p).split("undecodable ")[-1].split(";")[0]) for p in (worker, again)
    )
    assert total_undecodable == 1


def test_classic_protocol_works_too(kafka: Kafka, procs: Procs) -> None:
    topic = kafka.new_topic(2)
    with RecordingShadow() as shadow:
        worker, port = start_worker(
            procs, kafka, topic, f"g-{topic}", shadow, "w", "--group-protocol", "classic"
        )
        produce_events(kafka.bootstrap_servers, topic, traffic(12))
        wait_until("the replay", lambda: len(shadow.received) >= 12)
        assert worker.stop() == 0, log(worker)
        check_exactly_once_in_order(shadow.received, range(12))


def test_unknown_topic_is_one_line_and_exit_2(kafka: Kafka) -> None:
    result = run_cli(
        [
            "worker",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            "tm-missing",
            "-g",
            "g",
            "--target",
            "http://127.0.0.1:9",
        ],
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"trafficmirror: error: topic 'tm-missing' does not exist on {kafka.bootstrap_servers}"
    ]


def test_in_process_with_a_fake_transport_and_backpressure(
    kafka: Kafka, caplog: pytest.LogCaptureFixture
) -> None:
    """run_worker() is callable from any thread and stops through its event."""
    topic = kafka.new_topic(2)
    kafka.create_topic(results_topic(topic), 2)
    produce_events(kafka.bootstrap_servers, topic, traffic(300))
    seen: list[OutgoingRequest] = []
    peak = 0.0
    release_at: float | None = None  # set by the first request

    async def handler(request: OutgoingRequest) -> Response:
        nonlocal peak, release_at
        seen.append(request)
        in_flight = REGISTRY.get_sample_value("trafficmirror_replayer_in_flight") or 0.0
        peak = max(peak, in_flight)
        # A shadow that hangs for 1.5 s from the first request on, and then recovers.
        if release_at is None:
            release_at = time.monotonic() + 1.5
        await asyncio.sleep(max(release_at - time.monotonic(), 0.001))
        return Response(200)

    caplog.set_level(logging.DEBUG, logger="replayer.consuming.member")
    stop = threading.Event()
    result: dict[str, Any] = {}

    def run() -> None:
        config = WorkerConfig(
            settings=KafkaSettings(kafka.bootstrap_servers),
            topic=topic,
            group=f"g-{topic}",
            start_from=StartFrom(EARLIEST),  # the records are produced first
            target="http://shadow.invalid",
            concurrency=2,
            drain_timeout=5,
            selection=SelectOptions(methods=None),
        )
        result["stats"] = run_worker(config, transport=MockTransport(handler), stop_event=stop)

    thread = threading.Thread(target=run)
    thread.start()
    wait_until("all requests", lambda: len(seen) >= 300)
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    stats = result["stats"]
    assert (stats.consumed, stats.sent, stats.errors) == (300, 300, 0)
    assert {r.header("Host") for r in seen} == {"shadow.invalid"}
    # concurrency 2 → at most max(2 * 4, 64) records in flight; the partitions pause when
    # nothing finished for a second, and resume when half of them finished.
    assert 8 < peak <= 64, peak
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("pausing [0, 1]") for m in messages), messages
    assert any(m.startswith("resuming [0, 1]") for m in messages), messages
    # Every replay's result is in <topic>.results by the time the worker returns.
    assert any(f"{results_topic(topic)}: written 300, lost 0" in m for m in messages), messages
    written = sum(watermarks(kafka.bootstrap_servers, results_topic(topic), p)[1] for p in (0, 1))
    assert written == 300
