"""A worker on the virtual clock: partitions merged in recorded order, due times kept,
and records waiting for their due time bounded like any in flight."""

from __future__ import annotations

import threading
import time
from typing import Any

from prometheus_client import REGISTRY

from replayer.consuming.startfrom import EARLIEST, StartFrom
from replayer.consuming.worker import WorkerConfig, run_worker
from replayer.models import Response
from replayer.pacing.clock import Pace
from replayer.sending.sender import MockTransport, OutgoingRequest
from tests.replayer.consuming.test_worker import wait_until
from tests.replayer.events import make_event, produce_events
from tests.support import Kafka
from trafficmirror.plumbing.kafka import KafkaSettings, results_topic

BASE_US = 1_780_000_000_000_000
GAP_US = 20_000


def test_worker_at_speed_1_merges_partitions_and_bounds_what_waits(kafka: Kafka) -> None:
    topic = kafka.new_topic(2)
    kafka.create_topic(results_topic(topic), 2)
    count = 150
    # Alternating partitions, all written before the worker starts: read partition
    # by partition, they must still go out one every 20 ms in recorded order.
    events = [
        make_event(
            path=f"/{n}", request_start_us=BASE_US + n * GAP_US, client=("10.3.0.1", 3000 + n % 7)
        )
        for n in range(count)
    ]
    produce_events(kafka.bootstrap_servers, topic, events, spread=2)
    arrived: list[tuple[float, int]] = []
    peak = 0.0

    def handler(request: OutgoingRequest) -> Response:
        nonlocal peak
        arrived.append((time.time(), int(request.url.rsplit("/", 1)[1])))
        peak = max(peak, REGISTRY.get_sample_value("trafficmirror_replayer_in_flight") or 0.0)
        return Response(200)

    stop = threading.Event()
    result: dict[str, Any] = {}
    timed_before = REGISTRY.get_sample_value("trafficmirror_replayer_lateness_seconds_count") or 0

    def run() -> None:
        config = WorkerConfig(
            settings=KafkaSettings(kafka.bootstrap_servers),
            topic=topic,
            group=f"g-{topic}",
            start_from=StartFrom(EARLIEST),  # the records are produced first
            target="http://shadow.invalid",
            concurrency=1,
            drain_timeout=5,
            pace=Pace(speed=1.0),
        )
        result["stats"] = run_worker(config, transport=MockTransport(handler), stop_event=stop)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_until("every request", lambda: len(arrived) >= count, 30)
    finally:
        stop.set()
        thread.join(30)
    assert [n for _, n in arrived] == list(range(count))
    took = arrived[-1][0] - arrived[0][0]
    assert abs(took - (count - 1) * GAP_US / 1e6) <= 0.05 * took
    # concurrency 1 → at most 64 records in flight, most of them waiting for their time.
    assert 32 < peak <= 64, peak
    stats = result["stats"]
    assert stats.sent == count and stats.lateness.count == count
    timed = REGISTRY.get_sample_value("trafficmirror_replayer_lateness_seconds_count") or 0
    assert timed - timed_before == count
