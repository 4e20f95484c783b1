"""Where a worker group starts, and how it refuses to start, through real worker processes.

`--start-from latest` (the default) replays only what is recorded after the
group joined; `earliest` everything retained; a time the records stamped at or
after it (found on the mock broker, which cannot look timestamps up, by
searching the records). A group with commits resumes from them whatever
`--start-from` says, and the start position is committed at once, so a worker
that saw nothing before it stopped does not skip what came meanwhile. A
metrics port in use is one line before anything starts.
"""

from __future__ import annotations

import datetime as dt
import socket
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.replayer.events import make_event, produce_events
from tests.support import Kafka, Proc, Procs, free_port, run_cli
from trafficmirror.demo.apps import Received, RecordingShadow

BASE_US = 1_760_000_000_000_000

pytestmark = pytest.mark.e2e


def events(tags: range | list[int], base_us: int = BASE_US) -> list[dict[str, object]]:
    """One GET per tag, 10 s apart in recorded time, tagged `X-Tag: <n>`."""
    return [
        make_event(path=f"/{n}", headers=[("Host", "h"), ("X-Tag", str(n))],
                   request_start_us=base_us + n * 10_000_000)
        for n in tags
    ]  # fmt: skip


def start_worker(procs: Procs, kafka: Kafka, topic: str, group: str, target: str,
                 *args: str) -> Proc:  # fmt: skip
    return procs.start(
        f"worker-{group}",
        ["worker", "-b", kafka.bootstrap_servers, "-t", topic, "--group", group,
         "--target", target, *args],
    )  # fmt: skip


def wait_log(proc: Proc, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.stderr:
        assert proc.popen.poll() is None, proc.stderr
        assert time.monotonic() < deadline, proc.stderr
        time.sleep(0.05)


def tags(received: list[Received]) -> list[int]:
    return sorted(int(r.header("X-Tag") or -1) for r in received)


def committed(kafka: Kafka, topic: str, group: str) -> int:
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": group})
    try:
        (tp,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        consumer.close()
    return int(tp.offset)


def test_latest_earliest_and_a_time_for_new_groups(kafka: Kafka, procs: Procs) -> None:
    topic = kafka.new_topic(1)
    produce_events(kafka.bootstrap_servers, topic, events(range(10)))
    since = dt.datetime.fromtimestamp(BASE_US / 1e6 + 55, dt.UTC).isoformat()  # tags 6..9
    with RecordingShadow() as live, RecordingShadow() as everything, RecordingShadow() as timed:
        latest = start_worker(procs, kafka, topic, "g-latest", live.url)
        earliest = start_worker(procs, kafka, topic, "g-earliest", everything.url,
                                "--start-from", "earliest")  # fmt: skip
        at_time = start_worker(procs, kafka, topic, "g-time", timed.url, "--start-from", since)
        wait_log(latest, "starting from latest at 0@10")
        wait_log(earliest, "starting from earliest at 0@0")
        wait_log(at_time, "at 0@6")
        # Recorded after the groups joined: every group replays these.
        produce_events(kafka.bootstrap_servers, topic, events([10, 11]))
        live.wait_for(2, timeout=30)
        everything.wait_for(12, timeout=30)
        timed.wait_for(6, timeout=30)
        time.sleep(0.3)  # anything more would arrive now
        for proc in (latest, earliest, at_time):
            assert proc.stop() == 0, proc.stderr
        assert tags(live.received) == [10, 11]
        assert tags(everything.received) == list(range(12))
        assert tags(timed.received) == [6, 7, 8, 9, 10, 11]
    assert committed(kafka, topic, "g-latest") == 12


def test_a_group_resumes_from_its_commits_and_its_start_is_committed(
    kafka: Kafka, procs: Procs
) -> None:
    topic = kafka.new_topic(1)
    produce_events(kafka.bootstrap_servers, topic, events(range(3)))
    with RecordingShadow() as shadow:
        first = start_worker(procs, kafka, topic, "g-resume", shadow.url)
        wait_log(first, "starting from latest at 0@3")
        assert first.stop() == 0, first.stderr
        # Nothing was replayed, yet the start is the group's: a restart resumes there.
        assert committed(kafka, topic, "g-resume") == 3
        produce_events(kafka.bootstrap_servers, topic, events([3, 4]))
        again = start_worker(procs, kafka, topic, "g-resume", shadow.url,
                             "--start-from", "earliest")  # fmt: skip
        shadow.wait_for(2, timeout=30)
        wait_log(again, "assigned partitions [0]")
        time.sleep(0.3)
        assert again.stop() == 0, again.stderr
        assert "no committed offset" not in again.stderr
        assert tags(shadow.received) == [3, 4]
    assert committed(kafka, topic, "g-resume") == 5


def test_a_metrics_port_in_use_is_one_line_before_anything_starts(kafka: Kafka) -> None:
    topic = kafka.new_topic(1)
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = run_cli(
            ["worker", "-b", kafka.bootstrap_servers, "-t", topic, "--group", "g",
             "--target", "http://127.0.0.1:9", "--metrics-port", str(port)],
            timeout=60,
        )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert lines == [
        f"trafficmirror: error: cannot serve metrics on 127.0.0.1:{port} (--metrics-port): "
        "Address already in use"
    ], result.stderr
    assert result.stdout == ""
