"""Time window → spans: the window's records plus the margin, partitions without any left out."""

from __future__ import annotations

from confluent_kafka import Producer

from replayer.consuming.spans import Span
from replayer.consuming.timeindex import ORDER_SLACK_MS
from replayer.consuming.window import window_spans
from tests.support import Kafka
from trafficmirror.plumbing.kafka import KafkaSettings

BASE_MS = 1_760_000_000_000
SECOND = 1000


def test_spans_of_a_window_across_partitions(kafka: Kafka) -> None:
    topic = kafka.new_topic(3)
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 5})
    for n in range(50):  # partition 0: one record every 10 s
        producer.produce(topic, b"x", partition=0, timestamp=BASE_MS + n * 10 * SECOND)
    for n in range(5):  # partition 1: long before the window
        producer.produce(topic, b"x", partition=1, timestamp=BASE_MS - 3600 * SECOND + n)
    assert producer.flush(30) == 0
    settings = KafkaSettings(kafka.bootstrap_servers)
    since, until = BASE_MS + 200 * SECOND, BASE_MS + 300 * SECOND
    spans, notes = window_spans(settings, topic, [], since, until)
    margin = ORDER_SLACK_MS // (10 * SECOND)
    assert spans == [Span(0, 20 - margin, 29 + margin)]
    assert any("partition 1" in n and "no records in the window" in n for n in notes)
    assert any("partition 2" in n and "empty" in n for n in notes)

    open_start, _ = window_spans(settings, topic, [0], None, until)
    assert open_start == [Span(0, 0, 29 + margin)]
    open_end, _ = window_spans(settings, topic, [0, 1], since, None)
    assert open_end == [Span(0, 20 - margin, 49)]
