"""Replay control through real processes: time warp, idle compression, rate limit.

* Real traffic with known gaps goes through `trafficmirror record` over several
  client connections (so over several partitions); `replay range --speed 2
  --max-gap 0.3` must reproduce every recorded gap at half length on a shadow
  that timestamps what it receives, the long idle stretch cut to 0.3 s first,
  in recorded order across partitions. The median gap is within 5 ms; each
  gap within 15 ms or 10 % plus the lateness the replay itself reports: on a
  loaded machine one delivery to the in-process shadow can be late by more
  than the median allows, while a wrong speed still fails every bound.
* `worker --rate 100` replays 500 exchanges in 5 s ± 5 %, one worker alone and
  two workers in one group alike (each takes its share of the partitions).
"""

from __future__ import annotations

import http.client
import re
import statistics
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, TopicPartition

from schemas.codec import Codec
from tests.e2e.test_pipeline import PARTITIONS, readyz, topic_size, wait_until
from tests.replayer.events import make_event, produce_events
from tests.support import Kafka, Procs, free_port, run_cli, wait_port
from trafficmirror.demo.apps import Received, RecordingShadow, SampleApp
from trafficmirror.demo.traffic import REPLAY_HEADER

pytestmark = pytest.mark.e2e

#: Milliseconds between requests, cycled; one long idle stretch in the middle.
GAPS_MS = [40, 120, 60, 200, 80]
REQUESTS = 16
IDLE_AT, IDLE_MS = 8, 1000
CONNECTIONS = 4


def send_paced(port: int) -> None:
    """REQUESTS GETs over CONNECTIONS keep-alive connections, with the planned gaps."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(CONNECTIONS)]
    try:
        for seq in range(REQUESTS):
            if seq:
                gap = IDLE_MS if seq == IDLE_AT else GAPS_MS[seq % len(GAPS_MS)]
                time.sleep(gap / 1000)
            conn = conns[seq % CONNECTIONS]
            conn.request("GET", f"/paced/{seq}", headers={"X-Seq": str(seq)})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
    finally:
        for conn in conns:
            conn.close()


def recorded_starts(kafka: Kafka, topic: str) -> dict[str, int]:
    """Exchange id → recorded request start (µs), read back from the topic."""
    codec = Codec()
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": "tm-test-pace",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    starts: dict[str, int] = {}
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        ended: set[int] = set()
        deadline = time.monotonic() + 20
        while len(ended) < PARTITIONS and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                ended.add(message.partition())
                continue
            event = codec.decode(message.value())
            starts[event["id"]] = event["request_start_us"]
    finally:
        consumer.close()
    return starts


def test_speed_2_halves_every_recorded_gap_and_max_gap_cuts_the_idle_one(
    kafka: Kafka, procs: Procs
) -> None:
    topic = kafka.new_topic(PARTITIONS, prefix="e2e-pace")
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
        send_paced(port)
        wait_until("events in Kafka", lambda: topic_size(kafka, topic) >= REQUESTS, 30)
        assert recorder.stop() == 0, procs.dump()
    starts = recorded_starts(kafka, topic)
    assert len(starts) == REQUESTS

    with RecordingShadow() as shadow:
        # A real shadow has served requests before: its first one must not be the
        # first of the replay (on this machine that cost up to 28 ms once).
        warm_up = f"http://127.0.0.1:{shadow.port}/warm-up"
        with urllib.request.urlopen(warm_up, timeout=5) as response:
            response.read()
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
                "--speed",
                "2",
                "--max-gap",
                "0.3",
            ],
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        received: list[Received] = [r for r in shadow.received if r.path != "/warm-up"]
    assert len(received) == REQUESTS
    ids = [r.header(REPLAY_HEADER) or "" for r in received]
    recorded = [starts[i] for i in ids]
    # Recorded order across partitions (the keys spread the connections over them).
    assert recorded == sorted(recorded)
    lateness = [line for line in result.stdout.splitlines() if line.startswith("lateness: p50")]
    assert lateness, result.stdout
    late_max = float(re.findall(r"max ([0-9.]+)ms", lateness[0])[0]) / 1000
    assert late_max < 0.05, lateness  # the pacer itself kept to its schedule
    errors = []
    for n in range(1, REQUESTS):
        gap = (recorded[n] - recorded[n - 1]) / 1e6
        want = min(gap, 0.3) / 2
        got = received[n].at - received[n - 1].at
        errors.append(abs(got - want))
        assert errors[-1] <= max(0.015, 0.1 * want) + late_max, (n, gap, want, got, lateness)
    assert statistics.median(errors) <= 0.005, (errors, lateness)
    cut = [(recorded[n] - recorded[n - 1]) / 1e6 for n in range(1, REQUESTS)]
    assert max(cut) > 0.9  # the idle stretch was recorded, and replayed at 0.15 s


def metric(port: int, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


@pytest.mark.parametrize("workers", [1, 2])
def test_rate_100_takes_5_seconds_for_500_exchanges(
    kafka: Kafka, procs: Procs, workers: int
) -> None:
    topic = kafka.new_topic(PARTITIONS, prefix="e2e-rate")
    # As many per partition, so any split of the partitions takes the same time,
    # written in one go, so every partition has its records from the start.
    events = [make_event(path=f"/r/{n}", client=("10.2.0.1", 20000 + n % 5)) for n in range(500)]
    with RecordingShadow() as shadow:
        ports = []
        # fetch.wait.max.ms: after the suite's other tests, a worker idling on an empty
        # partition saw the new records up to 0.35 s after the other one (its fetch
        # waited out the default 500 ms), which is the broker's latency, not the rate's.
        for index in range(workers):
            ports.append(free_port())
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
                    "--metrics-port",
                    str(ports[-1]),
                    "--rate",
                    "100",
                    "-X",
                    "fetch.wait.max.ms=50",
                ],
            )
        wait_until("workers holding partitions", lambda: all(readyz(p) for p in ports), 30)
        produce_events(kafka.bootstrap_servers, topic, events, spread=PARTITIONS)
        wait_until("the first request", lambda: len(shadow.received) > 0, 20)
        time.sleep(max(shadow.received[0].at + 4.5 - time.time(), 0))
        rates = [metric(p, "trafficmirror_replayer_rate") or 0.0 for p in ports]
        wait_until("all requests", lambda: len(shadow.received) >= 500, 20)
        time.sleep(0.2)  # a duplicate would arrive now
        received = shadow.received
    assert len(received) == 500
    took = received[-1].at - received[0].at
    spans = {}
    for item in received:
        part = int(item.path.rsplit("/", 1)[1]) % PARTITIONS
        first, _ = spans.get(part, (item.at, item.at))
        spans[part] = (first, item.at)
    per_partition = {
        p: (round(a - received[0].at, 2), round(b - received[0].at, 2))
        for p, (a, b) in sorted(spans.items())
    }
    assert took == pytest.approx(5.0, rel=0.05), (took, per_partition)
    # The achieved-rate gauge, over its last 5 s window (which began before the
    # first request): about 90/s for the group.
    assert 60 < sum(rates) <= 105, rates
