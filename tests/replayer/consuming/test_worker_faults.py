"""Two `worker` processes in one group, one of them SIGKILLed or SIGTERMed mid-stream.

Each worker replays to its own recording shadow, so the shadows' logs say which
worker sent what; together they are "the shadow". The group runs on a private
mock cluster whose KIP-848 session timeout is 3 s (heartbeats every 0.5 s):
under KIP-848 that timeout is a broker setting, a client's `session.timeout.ms`
does not apply, and the mock's own default would make the test wait far longer
for the killed member to be fenced.
"""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from replayer.assembly import IN_FLIGHT_PER_SLOT
from schemas.codec import Codec
from tests.replayer.consuming.test_worker import log, metrics, start_worker, wait_until
from tests.replayer.events import connection_key, make_event
from tests.support import Kafka, Procs
from trafficmirror.demo.apps import Received, RecordingShadow
from trafficmirror.plumbing.devbroker import MockCluster

pytestmark = pytest.mark.e2e

PARTITIONS = 4
CONNECTIONS = 16
RECORDS = 400
CONCURRENCY = 4
#: The killed worker's in-flight bound: records read but not finished.
MAX_IN_FLIGHT = max(CONCURRENCY * IN_FLIGHT_PER_SLOT, 64)
SHADOW_DELAY = 0.05
SESSION_TIMEOUT_MS = 3000
HEARTBEAT_MS = 500
#: Stored offsets are auto-committed this often (librdkafka's default is 5 s).
COMMIT_INTERVAL_MS = 100


#: A graceful stop leaves the group explicitly, so no short timeout is needed;
#: a long one keeps a member that a loaded machine starves of CPU for a few
#: seconds in the group (a fenced survivor would legitimately replay again).
RELAXED_SESSION_TIMEOUT_MS = 15000


def _cluster(session_timeout_ms: int) -> Iterator[Kafka]:
    mock = MockCluster(brokers=1, default_partitions=PARTITIONS)
    mock.set_group_consumer_timeouts(session_timeout_ms, HEARTBEAT_MS)
    try:
        yield Kafka(mock.bootstrap_servers, mock=mock)
    finally:
        mock.close()


@pytest.fixture
def cluster() -> Iterator[Kafka]:
    yield from _cluster(SESSION_TIMEOUT_MS)


@pytest.fixture
def relaxed_cluster() -> Iterator[Kafka]:
    yield from _cluster(RELAXED_SESSION_TIMEOUT_MS)


def produce_tracked(bootstrap: str, topic: str, count: int) -> dict[int, tuple[int, int]]:
    """`count` events over CONNECTIONS connections; returns seq → (partition, offset)."""
    codec = Codec()
    where: dict[int, tuple[int, int]] = {}
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})

    def delivered(err: Any, msg: Any, seq: int) -> None:
        assert err is None, err
        where[seq] = (msg.partition(), msg.offset())

    for seq in range(count):
        conn = seq % CONNECTIONS
        event = make_event(
            path=f"/c{conn}/{seq}",
            headers=[("Host", "shop"), ("X-Conn", str(conn)), ("X-Seq", str(seq))],
            client=("10.2.2.2", 31000 + conn),
        )
        encoded = codec.encode(event)
        producer.produce(
            topic,
            encoded.value,
            connection_key(event),
            headers=encoded.headers,
            on_delivery=lambda err, msg, seq=seq: delivered(err, msg, seq),
        )
    assert producer.flush(30) == 0
    assert len(where) == count
    return where


def committed(bootstrap: str, topic: str, group: str) -> dict[int, int]:
    """The group's committed offsets per partition (-1001 = none), read without joining."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = probe.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in offsets}
    finally:
        probe.close()


def seqs(received: list[Received]) -> list[int]:
    return [int(r.header("X-Seq") or -1) for r in received]


def assigned(port: int) -> int:
    """Partitions the worker's /metrics says it holds; -1 before it answers."""
    try:
        text = metrics(port)
    except OSError:
        return -1
    match = re.search(r"^trafficmirror_replayer_assigned_partitions (\S+)$", text, re.M)
    return int(float(match.group(1))) if match else -1


def holding(proc_log: str) -> list[int]:
    """The partitions a worker said it holds, last time it said so."""
    found = re.findall(r"now holding \[([0-9, ]*)\]", proc_log)
    return [int(p) for p in found[-1].split(",") if p.strip()] if found else []


#: Under the classic protocol the client's session timeout applies (the mock
#: honours it), and a rebalance waits up to max.poll.interval.ms for members.
CLASSIC = (
    "--group-protocol",
    "classic",
    "-X",
    f"session.timeout.ms={SESSION_TIMEOUT_MS}",
    "-X",
    f"heartbeat.interval.ms={HEARTBEAT_MS}",
    "-X",
    f"max.poll.interval.ms={SESSION_TIMEOUT_MS}",
)


def start_pair(
    procs: Procs,
    kafka: Kafka,
    topic: str,
    group: str,
    shadows: tuple[Any, Any],
    protocol: str = "consumer",
) -> list[tuple[Any, int]]:
    extra = (
        "--concurrency",
        str(CONCURRENCY),
        "-X",
        f"auto.commit.interval.ms={COMMIT_INTERVAL_MS}",
        *(CLASSIC if protocol == "classic" else ()),
    )
    workers = [
        start_worker(procs, kafka, topic, group, shadow, name, *extra)
        for shadow, name in zip(shadows, ("survivor", "victim"), strict=True)
    ]
    ports = [port for _, port in workers]
    wait_until(
        "both workers to share the partitions",
        lambda: (
            [assigned(p) > 0 for p in ports] == [True, True]
            and sum(assigned(p) for p in ports) == PARTITIONS
        ),
        timeout=30,
    )
    for proc, port in workers:  # the log line follows the gauge
        wait_until(
            "the assignment in the log",
            lambda proc=proc, port=port: len(holding(log(proc))) == assigned(port),
        )
    return workers


def wait_quiet(shadows: tuple[RecordingShadow, RecordingShadow], quiet: float = 1.0) -> None:
    """Until neither shadow received anything for `quiet` seconds."""
    last = -1
    still_since = time.monotonic()
    while time.monotonic() - still_since < quiet:
        now = sum(len(s.received) for s in shadows)
        if now != last:
            last, still_since = now, time.monotonic()
        time.sleep(0.05)


@pytest.mark.parametrize("protocol", ["consumer", "classic"])
def test_sigkill_mid_stream_loses_nothing_and_duplicates_only_the_uncommitted_window(
    cluster: Kafka, procs: Procs, protocol: str
) -> None:
    topic = cluster.new_topic(PARTITIONS)
    group = f"g-{topic}"
    with RecordingShadow(delay=SHADOW_DELAY) as a, RecordingShadow(delay=SHADOW_DELAY) as b:
        (survivor, survivor_port), (victim, _) = start_pair(
            procs, cluster, topic, group, (a, b), protocol
        )
        victim_partitions = holding(log(victim))
        where = produce_tracked(cluster.bootstrap_servers, topic, RECORDS)
        wait_until("the victim mid-stream", lambda: len(b.received) >= 40, timeout=30)
        victim.popen.kill()  # SIGKILL: no drain, no commit, no leave
        victim.popen.wait(10)
        killed_at = time.monotonic()
        at_kill = committed(cluster.bootstrap_servers, topic, group)
        sent_by_victim = seqs(b.received)
        wait_until(
            "the survivor to take over every partition",
            lambda: assigned(survivor_port) == PARTITIONS,
            timeout=30,
        )
        takeover = time.monotonic() - killed_at
        wait_until(
            "every exchange at the shadow",
            lambda: set(seqs(a.received)) | set(seqs(b.received)) == set(range(RECORDS)),
            timeout=60,
        )
        wait_quiet((a, b))
        from_survivor = seqs(a.received)
    assert sent_by_victim == seqs(b.received)  # the dead one sent nothing more
    # Each worker sent each record at most once; together every record at least once.
    assert max(Counter(from_survivor).values()) == 1
    assert max(Counter(sent_by_victim).values()) == 1
    assert set(from_survivor) | set(sent_by_victim) == set(range(RECORDS))
    duplicates = sorted(set(from_survivor) & set(sent_by_victim))
    # The window: what the victim had sent at or past its committed offsets.
    window = [s for s in sent_by_victim if where[s][1] >= at_kill[where[s][0]]]
    assert all(where[s][0] in victim_partitions for s in sent_by_victim)
    assert set(duplicates) <= set(window), (duplicates, window)
    assert len(window) <= MAX_IN_FLIGHT, (len(window), at_kill)
    assert holding(log(survivor)) == list(range(PARTITIONS))
    print(
        f"\nSIGKILL ({protocol}): {RECORDS} records, victim held {victim_partitions} and sent "
        f"{len(sent_by_victim)}; duplicates {len(duplicates)}, its uncommitted window "
        f"{len(window)} (bound {MAX_IN_FLIGHT}); survivor held all {PARTITIONS} partitions "
        f"{takeover:.1f}s after the kill (session timeout {SESSION_TIMEOUT_MS / 1000:g}s)"
    )


def test_sigterm_mid_stream_drains_commits_and_hands_over_exactly_once(
    relaxed_cluster: Kafka, procs: Procs
) -> None:
    cluster = relaxed_cluster
    topic = cluster.new_topic(PARTITIONS)
    group = f"g-{topic}"
    with RecordingShadow(delay=SHADOW_DELAY) as a, RecordingShadow(delay=SHADOW_DELAY) as b:
        (survivor, survivor_port), (victim, _) = start_pair(procs, cluster, topic, group, (a, b))
        victim_partitions = holding(log(victim))
        where = produce_tracked(cluster.bootstrap_servers, topic, RECORDS)
        wait_until("the victim mid-stream", lambda: len(b.received) >= 40, timeout=30)
        victim.signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        assert victim.wait(30) == 0, log(victim)
        stop_took = time.monotonic() - stopped_at
        wait_until(
            "the survivor to take over every partition",
            lambda: assigned(survivor_port) == PARTITIONS,
            timeout=30,
        )
        takeover = time.monotonic() - stopped_at
        wait_until(
            "every exchange at the shadow",
            lambda: set(seqs(a.received)) | set(seqs(b.received)) == set(range(RECORDS)),
            timeout=60,
        )
        wait_quiet((a, b))
        from_survivor, from_victim = seqs(a.received), seqs(b.received)
    # Exactly once across both workers.
    assert sorted(from_survivor + from_victim) == list(range(RECORDS))
    text = log(victim)
    drained = int(re.search(r"draining (\d+) in-flight requests", text).group(1))  # type: ignore[union-attr]
    assert drained > 0, "stopped with nothing in flight: the test proved no drain"
    assert "abandoned" not in text
    # Its final commit is one past the last record it sent in each partition it held,
    # and the survivor started exactly there.
    summary = re.search(r"committed ((?:\d+@\d+(?:, )?)+)", text)
    assert summary is not None, text
    final = {int(p): int(o) for p, o in re.findall(r"(\d+)@(\d+)", summary.group(1))}
    assert sorted(final) == victim_partitions
    for partition, position in final.items():
        victims = [where[s][1] for s in from_victim if where[s][0] == partition]
        survivors = [where[s][1] for s in from_survivor if where[s][0] == partition]
        assert max(victims) + 1 == position
        assert not survivors or min(survivors) == position
    assert holding(log(survivor)) == list(range(PARTITIONS))
    print(
        f"\nSIGTERM: {RECORDS} records, victim held {victim_partitions}, drained {drained} "
        f"in-flight requests and exited 0 in {stop_took:.1f}s, committed "
        f"{summary.group(1)}; sent {len(from_victim)} + survivor {len(from_survivor)} = "
        f"{RECORDS}, no duplicate; survivor held all {PARTITIONS} partitions "
        f"{takeover:.1f}s after the signal"
    )
