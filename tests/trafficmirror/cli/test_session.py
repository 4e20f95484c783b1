"""`trafficmirror session start|set|show|stop` as real processes against the broker."""

from __future__ import annotations

import datetime as dt
import time

from confluent_kafka import Consumer, TopicPartition

from replayer.sessions.store import read_session
from tests.replayer.events import make_event, produce_events
from tests.support import Kafka, run_cli
from trafficmirror.plumbing.kafka import KafkaSettings

T0 = 1_760_000_000_000_000


def session(kafka: Kafka, *args: str) -> tuple[int, str, str]:
    result = run_cli(["session", *args[:1], "-b", kafka.bootstrap_servers, *args[1:]], timeout=60)
    return result.returncode, result.stdout, result.stderr


def test_start_set_show_stop(kafka: Kafka) -> None:
    topic = kafka.new_topic(2)
    settings = KafkaSettings(kafka.bootstrap_servers)
    code, out, err = session(kafka, "show", "-t", topic, "-g", "g")
    assert (code, out.strip()) == (
        0,
        "no replay session for group 'g': workers replay records as they arrive",
    ), err

    before = time.time_ns() // 1000
    code, out, err = session(
        kafka, "start", "-t", topic, "-g", "g", "--speed", "2", "--rate", "150", "--lead", "0.5"
    )
    after = time.time_ns() // 1000
    assert code == 0, err
    started = read_session(settings, topic, "g")
    assert started is not None and started.revision == 1
    assert (started.speed, started.rate, started.group) == (2.0, 150.0, "g")
    assert before + 500_000 <= started.start_at_us <= after + 500_000
    # An empty topic: nothing to catch up, the clock is anchored at the start itself.
    assert started.anchor_us == started.start_at_us
    assert out.startswith(f"started session {started.session_id} of group 'g'")

    code, out, err = session(kafka, "start", "-t", topic, "-g", "g")
    assert code == 2 and err.strip().splitlines() == [
        f"trafficmirror: error: group 'g' already has session {started.session_id} "
        "(revision 1): change it with 'session set' or end it with 'session stop'"
    ]

    time.sleep(0.6)  # the session runs
    code, out, err = session(
        kafka, "set", "-t", topic, "-g", "g", "--speed", "0.5", "--rate", "none"
    )
    assert code == 0, err
    changed = read_session(settings, topic, "g")
    assert changed is not None and changed.revision == 2
    assert (changed.session_id, changed.speed, changed.rate) == (started.session_id, 0.5, None)
    # The clock goes on: at the switch, the new revision is where the old one got to.
    assert changed.anchor_us == started.virtual_us(changed.start_at_us)
    assert "speed 2x -> 0.5x, rate 150/s -> none" in out

    code, out, err = session(kafka, "show", "-t", topic, "-g", "g")
    assert code == 0, err
    assert f"session {started.session_id} of group 'g' on {topic}.control, revision 2" in out
    assert "speed: 0.5x" in out and "rate: none" in out

    code, out, err = session(kafka, "stop", "-t", topic, "-g", "g")
    assert (code, out.strip()) == (0, f"stopped session {started.session_id} of group 'g'")
    assert read_session(settings, topic, "g") is None
    code, out, err = session(kafka, "set", "-t", topic, "-g", "g", "--speed", "3")
    assert code == 2 and err.strip() == (
        "trafficmirror: error: group 'g' has no replay session: start one with 'session start'"
    )


def test_start_anchors_at_the_first_record_the_group_has_not_replayed(kafka: Kafka) -> None:
    topic = kafka.new_topic(2)
    group = f"g-{topic}"  # groups outlive a test on the shared cluster: one of its own
    events = [
        make_event(request_start_us=T0 + i * 1000, client=("10.0.0.1", 40000 + i % 2))
        for i in range(20)
    ]
    for part in (0, 1):
        produce_events(kafka.bootstrap_servers, topic, events[part::2], partition=part)
    # The group replayed 5 records of partition 0 and 3 of partition 1 so far.
    committer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": group})
    committer.commit(
        offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 3)], asynchronous=False
    )
    committer.close()
    code, out, err = session(
        kafka, "start", "-t", topic, "-g", group, "--speed", "max", "--lead", "0.1"
    )
    assert code == 0, err
    started = read_session(KafkaSettings(kafka.bootstrap_servers), topic, group)
    # Partition 1's offset 3 is event 7 (T0 + 7 ms), partition 0's offset 5 is event 10.
    assert started is not None and started.anchor_us == T0 + 7000
    assert started.speed is None and "speed: max" in out
    # From max to a speed: no clock ran, the new one starts where the group is.
    code, out, err = session(kafka, "set", "-t", topic, "-g", group, "--speed", "1")
    assert code == 0, err
    changed = read_session(KafkaSettings(kafka.bootstrap_servers), topic, group)
    assert changed is not None and changed.anchor_us == T0 + 7000
    assert changed.start_at_us > started.start_at_us and changed.speed == 1.0

    # A group that never committed starts at the beginning.
    code, out, err = session(kafka, "start", "-t", topic, "-g", "fresh")
    assert code == 0, err
    fresh = read_session(KafkaSettings(kafka.bootstrap_servers), topic, "fresh")
    assert fresh is not None and fresh.anchor_us == T0 and fresh.speed == 1.0


def test_since_anchors_the_clock_and_until_is_kept(kafka: Kafka) -> None:
    topic = kafka.new_topic(1)
    since = dt.datetime(2025, 10, 9, 8, 0, 0, 250000, tzinfo=dt.UTC)
    code, out, err = session(
        kafka,
        "start",
        "-t",
        topic,
        "-g",
        "g",
        "--since",
        since.isoformat(),
        "--until",
        "2025-10-09T09:00:00Z",
    )
    assert code == 0, err
    started = read_session(KafkaSettings(kafka.bootstrap_servers), topic, "g")
    assert started is not None
    assert started.anchor_us == started.since_us == round(since.timestamp() * 1e6)
    assert started.until_us == round(dt.datetime(2025, 10, 9, 9, tzinfo=dt.UTC).timestamp() * 1e6)
    assert "window: since 2025-10-09T08:00:00.250Z until 2025-10-09T09:00:00.000Z" in out


def test_set_needs_something_to_change(kafka: Kafka) -> None:
    code, out, err = session(kafka, "set", "-t", "t", "-g", "g")
    assert code == 2 and err.strip().startswith(
        "trafficmirror: error: nothing to change: give --speed and/or --rate"
    )
