"""The Kafka sink: delivers, drops and counts, and never raises or blocks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from recorder.sink import KafkaSink
from tests.recorder.helpers import read_messages
from tests.support import Kafka, free_port
from trafficmirror.plumbing.errors import ConfigError
from trafficmirror.plumbing.kafka import KafkaSettings

HEADERS = [("content-type", b"application/avro"), ("x", b"1")]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def unreachable() -> KafkaSettings:
    """Bootstrap servers where nothing listens (a closed local port)."""
    return KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")


def consume(kafka: Kafka, topic: str, count: int) -> list[Any]:
    return read_messages(kafka.bootstrap_servers, topic, count)


@pytest.fixture
def sinks() -> Iterator[list[KafkaSink]]:
    made: list[KafkaSink] = []
    yield made
    for sink in made:
        sink.close(0)


def test_delivers_with_key_timestamp_and_headers(kafka: Kafka, topic: str) -> None:
    sink = KafkaSink(KafkaSettings(kafka.bootstrap_servers), topic)
    before = metric("trafficmirror_recorder_recorded_total")
    for i in range(5):
        assert sink.send(b"conn-1", f"event-{i}".encode(), HEADERS, 1_700_000_000_000 + i)
    stats = sink.close(10)
    assert (stats.enqueued, stats.delivered, stats.recorded) == (5, 5, 5)
    assert stats.dropped == stats.failed == 0
    assert metric("trafficmirror_recorder_recorded_total") - before == 5
    messages = consume(kafka, topic, 5)
    assert [m.value() for m in messages] == [f"event-{i}".encode() for i in range(5)]
    first = messages[0]
    assert first.key() == b"conn-1"
    assert first.timestamp()[1] == 1_700_000_000_000
    assert first.headers() == HEADERS
    # One key, one partition: a connection's exchanges stay in order.
    assert len({m.partition() for m in messages}) == 1


@pytest.mark.parametrize("only_errors", [None, False], ids=["batched", "user-asks-each"])
def test_acknowledgements_are_counted_while_running_and_once(
    kafka: Kafka, topic: str, only_errors: bool | None
) -> None:
    # The sink asks librdkafka for failure reports only and counts successes in
    # batches after each poll; a user's own delivery.report.only.error=false
    # brings back one report per message, which must not count twice.
    overrides = {} if only_errors is None else {"delivery.report.only.error": only_errors}
    sink = KafkaSink(KafkaSettings(kafka.bootstrap_servers), topic, **overrides)
    before = metric("trafficmirror_recorder_recorded_total")
    seen: list[tuple[int, int]] = []
    for i in range(200):
        assert sink.send(f"conn-{i % 7}".encode(), b"event", HEADERS, 1_700_000_000_000)
    deadline = time.monotonic() + 10
    while sink.stats.delivered < 200 and time.monotonic() < deadline:
        seen.append((sink.stats.delivered, sink.stats.enqueued))
        time.sleep(0.01)
    assert sink.stats.delivered == 200  # before close: the running count caught up
    assert all(delivered <= enqueued for delivered, enqueued in seen)
    stats = sink.close(10)
    assert (stats.enqueued, stats.delivered, stats.dropped, stats.failed) == (200, 200, 0, 0)
    assert metric("trafficmirror_recorder_recorded_total") - before == 200
    assert len(consume(kafka, topic, 200)) == 200


def test_kafka_reached_once_metadata_answers(
    kafka: Kafka, topic: str, sinks: list[KafkaSink]
) -> None:
    sink = KafkaSink(KafkaSettings(kafka.bootstrap_servers), topic)
    sinks.append(sink)
    deadline = time.monotonic() + 10
    while not sink.kafka_reached and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sink.kafka_reached


def test_full_queue_drops_and_counts_without_blocking(sinks: list[KafkaSink]) -> None:
    sink = KafkaSink(unreachable(), "t", **{"queue.buffering.max.messages": 3})
    sinks.append(sink)
    before = metric("trafficmirror_recorder_dropped_total", reason="queue_full")
    started = time.perf_counter()
    results = [sink.send(b"k", b"v" * 100, HEADERS, 0) for _ in range(50)]
    elapsed = time.perf_counter() - started
    assert results.count(True) == 3
    assert sink.stats.queue_full == 47
    assert metric("trafficmirror_recorder_dropped_total", reason="queue_full") - before == 47
    assert elapsed < 0.5, f"send() took {elapsed:.3f}s for 50 messages"
    assert not sink.kafka_reached


def test_close_counts_what_never_left_as_undelivered() -> None:
    sink = KafkaSink(unreachable(), "t", **{"queue.buffering.max.messages": 3})
    for _ in range(10):
        sink.send(b"k", b"v", None, 0)
    started = time.monotonic()
    stats = sink.close(0.5)
    assert time.monotonic() - started < 5
    assert (stats.queue_full, stats.undelivered, stats.delivered) == (7, 3, 0)
    assert stats.dropped == 10 and stats.failed == 0
    # After close, sends are refused and counted, never raised.
    assert sink.send(b"k", b"v", None, 0) is False
    assert sink.stats.undelivered == 4
    assert sink.close(0) is sink.stats


def test_delivery_timeout_counts_as_failed(sinks: list[KafkaSink]) -> None:
    sink = KafkaSink(unreachable(), "t", **{"message.timeout.ms": 200})
    sinks.append(sink)
    for _ in range(4):
        assert sink.send(b"k", b"v", None, 0)
    deadline = time.monotonic() + 10
    while sink.stats.delivery_failed < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sink.stats.delivery_failed == 4
    assert sink.stats.failed == 4 and sink.stats.recorded == 0


def test_produce_error_is_counted_not_raised(sinks: list[KafkaSink]) -> None:
    sink = KafkaSink(unreachable(), "t", **{"message.max.bytes": 1000})
    sinks.append(sink)
    before = metric("trafficmirror_recorder_failed_total", reason="produce")
    assert sink.send(b"k", b"x" * 5000, HEADERS, 0) is False
    assert sink.stats.produce_failed == 1
    assert metric("trafficmirror_recorder_failed_total", reason="produce") - before == 1


def test_bad_producer_property_is_a_config_error() -> None:
    settings = KafkaSettings("127.0.0.1:1", properties={"no.such.property": "1"})
    with pytest.raises(ConfigError, match="no.such.property"):
        KafkaSink(settings, "t")


def test_a_poll_before_the_sink_is_built_is_harmless(
    monkeypatch: pytest.MonkeyPatch, sinks: list[KafkaSink]
) -> None:
    # The poll thread starts inside BackgroundProducer(); with a broker that
    # refuses connections its first poll returns at once, possibly before
    # KafkaSink.__init__ has the producer. Run that first poll deterministically.
    from recorder import sink as sink_module

    real = sink_module.BackgroundProducer

    def polls_at_once(*args: Any, on_poll: Any = None, **kwargs: Any) -> Any:
        on_poll()
        return real(*args, on_poll=on_poll, **kwargs)

    monkeypatch.setattr(sink_module, "BackgroundProducer", polls_at_once)
    sink = KafkaSink(unreachable(), "t")
    sinks.append(sink)
    assert sink.send(b"k", b"v", HEADERS) is True


def test_a_topic_that_accepts_less_lowers_the_event_size_once_known(
    kafka: Kafka,
    topic: str,
    sinks: list[KafkaSink],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # librdkafka's mock cluster does not answer DescribeConfigs, so the topic's
    # answer is stood in for; the sink, its prober and the broker are real.
    from recorder import sink as sink_module

    asked: list[str] = []

    def limit(admin_config: dict[str, Any], name: str, timeout: float = 3.0) -> int:
        asked.append(name)
        return 1_048_588  # Kafka's broker default

    monkeypatch.setattr(sink_module, "topic_message_limit", limit)
    with caplog.at_level("WARNING", "recorder.sink"):
        sink = KafkaSink(
            KafkaSettings(kafka.bootstrap_servers), topic, **{"message.max.bytes": 2_375_680}
        )
        sinks.append(sink)
        deadline = time.monotonic() + 10
        while sink.max_message_bytes != 1_048_588 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert asked == [topic] and sink.max_message_bytes == 1_048_588
    assert f"topic {topic} accepts messages up to 1048588 bytes" in caplog.text


def test_the_topic_limit_is_asked_of_the_cluster(kafka: Kafka, topic: str) -> None:
    from recorder.sink import topic_message_limit

    config = KafkaSettings(kafka.bootstrap_servers).admin_client_config()
    limit = topic_message_limit(config, topic, timeout=0.5 if kafka.mock else 5.0)
    if kafka.mock is not None:
        assert limit is None  # the mock has no DescribeConfigs: unknown, nothing changes
    else:
        assert limit is not None and limit > 0
