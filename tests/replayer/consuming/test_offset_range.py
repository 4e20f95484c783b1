"""`trafficmirror replay range` as a real process against the broker and a real shadow."""

from __future__ import annotations

import time
from typing import Any

import pytest

from replayer.sending.request import REPLAY_HEADER
from tests.replayer.events import make_event, produce_events
from tests.support import Kafka, free_port, run_cli
from trafficmirror.demo.apps import Received, RecordingShadow

pytestmark = pytest.mark.e2e


def numbered(partition: int, count: int) -> list[dict[str, Any]]:
    """Events whose headers say where they were written, with varied bodies."""
    events = []
    for n in range(count):
        body = bytes([n, partition]) * (n * 7) if n % 2 else b""
        headers: list[tuple[str, str]] = [
            ("Host", "shop.example.com"),
            ("X-Part", str(partition)),
            ("X-Seq", str(n)),
            ("X-Dup", "a"),
            ("x-dup", "b"),
        ]
        if body:
            headers.append(("Content-Length", str(len(body))))
        events.append(
            make_event(
                method="POST" if body else "GET",
                path=f"/p{partition}/{n}?q=a%20b&q=c",
                headers=headers,
                body=body,
                client=("10.0.0.1", 40000 + n % 3),
            )
        )
    return events


@pytest.fixture
def loaded(kafka: Kafka) -> tuple[str, dict[int, list[dict[str, Any]]]]:
    """A 3-partition topic: 10 events in partition 0, 4 in partition 1, none in 2."""
    topic = kafka.new_topic(3)
    events = {0: numbered(0, 10), 1: numbered(1, 4)}
    for partition, items in events.items():
        produce_events(kafka.bootstrap_servers, topic, items, partition=partition)
    return topic, events


def replay(kafka: Kafka, topic: str, target: str, *args: str) -> Any:
    return run_cli(
        [
            "replay",
            "range",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            topic,
            "--target",
            target,
            "--methods",
            "ALL",
            *args,
        ],
        timeout=60,
    )


def seqs(received: list[Received], partition: int) -> list[int]:
    return sorted(
        int(r.header("X-Seq") or -1) for r in received if r.header("X-Part") == str(partition)
    )


def test_replays_exactly_the_offsets_asked_for(
    kafka: Kafka, loaded: tuple[str, dict[int, list[dict[str, Any]]]]
) -> None:
    topic, events = loaded
    with RecordingShadow() as shadow:
        result = replay(
            kafka, topic, shadow.url, "-p", "0", "--start-offset", "3", "--end-offset", "7"
        )
        assert result.returncode == 0, result.stderr
        time.sleep(0.2)  # anything beyond the range would arrive now
        received = shadow.received
    assert seqs(received, 0) == [3, 4, 5, 6, 7]
    assert len(received) == 5
    assert "partition 0: offsets 3..7: sent 5, errors 0" in result.stdout
    assert "total: consumed 5, sent 5, errors 0, skipped-truncated 0, undecodable 0" in (
        result.stdout
    )
    # Each request arrived as recorded: method, raw path, headers in order, body.
    for item in received:
        want = events[0][int(item.header("X-Seq") or -1)]
        assert item.method == want["method"]
        assert item.path == want["path"].decode()
        assert item.body == want["request"]["body"]
        flat = [x for pair in item.headers for x in pair]
        assert flat[:2] == [b"Host", f"127.0.0.1:{shadow.port}".encode()]
        assert flat[2:-2] == want["request"]["headers"][2:]
        assert flat[-2:] == [REPLAY_HEADER.encode(), want["id"].encode()]


def test_all_partitions_to_the_end_skips_the_empty_one(
    kafka: Kafka, loaded: tuple[str, dict[int, list[dict[str, Any]]]]
) -> None:
    topic, _ = loaded
    with RecordingShadow() as shadow:
        result = replay(kafka, topic, shadow.url, "--start-offset", "0")
        assert result.returncode == 0, result.stderr
        received = shadow.received
    assert seqs(received, 0) == list(range(10))
    assert seqs(received, 1) == list(range(4))
    assert "partition 2 of topic" in result.stderr and "is empty" in result.stderr
    assert "total: consumed 14, sent 14" in result.stdout


def test_truncated_bodies_are_skipped_and_garbage_fails_the_run(kafka: Kafka) -> None:
    topic = kafka.new_topic(1)
    events = [
        make_event(path="/ok"),
        make_event(
            method="POST", path="/cut", body=b"x" * 5, body_truncated=True, body_length=9000
        ),
        make_event(path="/after"),
    ]
    produce_events(kafka.bootstrap_servers, topic, events, raw=[(0, b"not an event")])
    with RecordingShadow() as shadow:
        result = replay(kafka, topic, shadow.url, "--start-offset", "0")
        received = shadow.received
    assert [r.path for r in received] == ["/ok", "/after"]
    assert "sent 2, errors 0, skipped-truncated 1, undecodable 1" in result.stdout
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "trafficmirror: 1 of 4 records could not be sent (errors 0, undecodable 1)"
    )


def test_a_dead_shadow_is_counted_and_exits_1(
    kafka: Kafka, loaded: tuple[str, dict[int, list[dict[str, Any]]]]
) -> None:
    topic, _ = loaded
    result = replay(
        kafka,
        topic,
        f"http://127.0.0.1:{free_port()}",
        "-p",
        "1",
        "--start-offset",
        "0",
        "--timeout",
        "5",
        "--give-up-after",
        "1",
    )
    # A refused connection is no result: the records are held until the guard gives up.
    assert result.returncode == 1
    assert "sent 0, errors 0" in result.stdout
    assert "stopped: the shadow did not answer for 1s (--give-up-after)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start-offset", "5", "--end-offset", "2"], "start offset 5 is after end offset 2"),
        (
            ["-p", "0", "--start-offset", "10"],
            "start offset 10 is outside: partition 0 of topic '{topic}' holds offsets 0..9 "
            "(low watermark 0, high 10)",
        ),
        (
            ["-p", "1", "--start-offset", "0", "--end-offset", "4"],
            "end offset 4 is outside: partition 1 of topic '{topic}' holds offsets 0..3 "
            "(low watermark 0, high 4)",
        ),
        (
            ["-p", "2", "--start-offset", "0", "--end-offset", "0"],
            "partition 2 of topic '{topic}' is empty (low and high watermark 0): "
            "no offsets 0..0 to read",
        ),
        (["-p", "7", "--start-offset", "0"], "topic '{topic}' has no partition 7 (it has 0-2)"),
    ],
)
def test_bad_ranges_are_one_line_and_exit_2(
    kafka: Kafka,
    loaded: tuple[str, dict[int, list[dict[str, Any]]]],
    args: list[str],
    message: str,
) -> None:
    topic, _ = loaded
    with RecordingShadow() as shadow:
        result = replay(kafka, topic, shadow.url, *args)
        assert shadow.received == []
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message.format(topic=topic) in lines[0]


def test_unknown_topic_exits_2(kafka: Kafka) -> None:
    result = replay(kafka, "tm-no-such-topic", "http://127.0.0.1:9", "--start-offset", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"trafficmirror: error: topic 'tm-no-such-topic' does not exist on "
        f"{kafka.bootstrap_servers}"
    ]


def test_a_target_with_a_path_is_refused(kafka: Kafka) -> None:
    result = replay(kafka, "whatever", "http://127.0.0.1:9/prefix", "--start-offset", "0")
    assert result.returncode == 2
    assert "has a path or query" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_sigint_stops_after_a_short_grace_with_a_summary(kafka: Kafka) -> None:
    import signal
    import subprocess
    import sys

    topic = kafka.new_topic(1)
    produce_events(
        kafka.bootstrap_servers,
        topic,
        [make_event(path=f"/{n}", client=("10.0.0.9", 1)) for n in range(40)],
    )
    with RecordingShadow(delay=0.5) as shadow:
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
                shadow.url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 20
        while not shadow.received and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "total: consumed 40, sent " in out
    sent = int(out.split("total: consumed 40, sent ")[1].split(",")[0])
    assert 1 <= sent < 40
    assert err.strip().splitlines()[-1] == (
        f"trafficmirror: interrupted; about {40 - sent} records of the range were not replayed"
    )
    assert "Traceback" not in err
