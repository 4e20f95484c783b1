"""Record → Kafka → replay through real processes, checked byte for byte.

`trafficmirror record` runs in front of a real HTTP app; a real HTTP client
sends GETs with queries, JSON POSTs, binary uploads and repeated headers over
several keep-alive connections; then the recorded topic is replayed (a) with
`replay range` and (b) by two `worker` processes in one group into a shadow that
keeps what it receives. The shadow must see every exchange exactly once, with
identical method, path, query, headers and body, each connection in order.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.support import Kafka, Procs, free_port, run_cli, wait_port
from trafficmirror.demo.apps import RecordingShadow, SampleApp
from trafficmirror.demo.traffic import Planned, check_delivery, plan, send

pytestmark = pytest.mark.e2e

REQUESTS = 60
PARTITIONS = 4


def topic_size(kafka: Kafka, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "probe"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        )
    finally:
        consumer.close()


def wait_until(what: str, condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def record_traffic(kafka: Kafka, topic: str, procs: Procs) -> list[Planned]:
    """Run `trafficmirror record` in front of a real app and send REQUESTS through it."""
    port = free_port()
    with SampleApp() as app:
        recorder = procs.start(
            "recorder",
            [
                "record",
                "-b",
                kafka.bootstrap_servers,
                "-t",
                topic,
                "--upstream",
                app.url,
                "--listen",
                f"127.0.0.1:{port}",
            ],
        )
        wait_port(port)
        traffic = send("127.0.0.1", port, plan(REQUESTS, connections=5))
        assert all(p.status == 200 for p in traffic), [p.status for p in traffic]
        wait_until("events in Kafka", lambda: topic_size(kafka, topic) >= REQUESTS, 30)
        assert recorder.stop() == 0, procs.dump()
    assert topic_size(kafka, topic) == REQUESTS
    assert "recorded" in recorder.stderr
    return traffic


def readyz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def recording(
    kafka: Kafka, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[Planned]]]:
    """A topic holding the recording of REQUESTS real exchanges."""
    topic = kafka.new_topic(PARTITIONS, prefix="e2e")
    procs = Procs(tmp_path_factory.mktemp("recorder"))
    try:
        traffic = record_traffic(kafka, topic, procs)
    except BaseException:
        print(procs.dump())
        raise
    finally:
        procs.close()
    yield topic, traffic


def test_replay_range_delivers_every_exchange_intact(
    kafka: Kafka, recording: tuple[str, list[Planned]]
) -> None:
    topic, traffic = recording
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
                "--end-offset",
                "end",
                "--target",
                shadow.url,
                "--methods",
                "ALL",
            ]
        )
        assert result.returncode == 0, result.stderr
        time.sleep(0.3)  # a duplicate would arrive now
        problems = check_delivery(traffic, shadow.received)
    assert problems == []


def test_two_workers_in_a_group_mirror_live_traffic_once(kafka: Kafka, procs: Procs) -> None:
    """Both workers hold partitions before the traffic starts, so both must replay."""
    topic = kafka.new_topic(PARTITIONS, prefix="e2e-live")
    with RecordingShadow() as shadow:
        ports = [free_port(), free_port()]
        workers = [
            procs.start(
                f"worker-{index}",
                [
                    "worker",
                    "--start-from",  # the records are produced first
                    "earliest",
                    "-b",
                    kafka.bootstrap_servers,
                    "-t",
                    topic,
                    "--group",
                    f"g-{topic}",
                    "--target",
                    shadow.url,
                    "--concurrency",
                    "8",
                    "--metrics-port",
                    str(port),
                    "--methods",
                    "ALL",
                ],
            )
            for index, port in enumerate(ports)
        ]
        wait_until("both workers to get partitions", lambda: all(readyz(p) for p in ports), 60)
        traffic = record_traffic(kafka, topic, procs)
        shadow.wait_for(REQUESTS, timeout=60)
        time.sleep(1.0)  # duplicates, if any, would arrive now
        for worker in workers:
            assert worker.stop() == 0, procs.dump()
        problems = check_delivery(traffic, shadow.received)
    assert problems == [], procs.dump()
    by_worker = {h.header("X-Trafficmirror-Replay") for h in shadow.received}
    assert len(by_worker) == REQUESTS
