"""`--start-from` values, and the positions found for partitions without a commit."""

from __future__ import annotations

import datetime as dt

import pytest
from confluent_kafka import Consumer, TopicPartition

from replayer.consuming.startfrom import EARLIEST, LATEST, StartFrom, StartPositions
from tests.replayer.events import make_event, produce_events
from tests.support import Kafka
from trafficmirror.plumbing.errors import ConfigError
from trafficmirror.plumbing.kafka import KafkaSettings

BASE_US = 1_760_000_000_000_000


def test_parse_words_and_times() -> None:
    assert StartFrom.parse("latest") == StartFrom(LATEST)
    assert StartFrom.parse(" Earliest ") == StartFrom(EARLIEST)
    at = StartFrom.parse("2025-10-09T08:53:20Z")
    assert at.time_ms == 1_760_000_000_000
    assert at.describe() == "2025-10-09T08:53:20.000+00:00"
    ago = StartFrom.parse("-2h").time_ms
    assert ago is not None
    assert abs(ago / 1000 - (dt.datetime.now(dt.UTC).timestamp() - 7200)) < 60
    with pytest.raises(ConfigError):
        StartFrom.parse("latests")


def test_positions_for_each_form_on_the_broker(kafka: Kafka) -> None:
    topic = kafka.new_topic(2)
    events = [make_event(request_start_us=BASE_US + n * 1_000_000) for n in range(10)]
    produce_events(kafka.bootstrap_servers, topic, events, spread=2)  # 5 per partition
    settings = KafkaSettings(kafka.bootstrap_servers)

    def positions(start: StartFrom, group: str = "fresh") -> dict[int, int]:
        starts = StartPositions(settings, topic, group, start)
        try:
            return starts.positions(starts.uncommitted([0, 1]))
        finally:
            starts.close()

    assert positions(StartFrom(LATEST)) == {0: 5, 1: 5}
    assert positions(StartFrom(EARLIEST)) == {0: 0, 1: 0}
    # 4.5 s after the first: partition 0 holds seconds 0,2,4,6,8; partition 1 1,3,5,7,9.
    at = StartFrom("time", BASE_US // 1000 + 4_500)
    assert positions(at) == {0: 3, 1: 2}
    # A group that committed partition 0 resumes there: only partition 1 is looked up.
    committer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "old"})
    try:
        committer.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
    finally:
        committer.close()
    assert positions(StartFrom(LATEST), group="old") == {1: 5}
