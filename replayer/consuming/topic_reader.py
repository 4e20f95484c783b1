"""Read the records of an offset range or a time window of a topic, once, in order per partition.

`inspect` prints them and `export` writes them to a file: both want the same
records — every partition's span resolved from offsets (`spans.resolve_spans`)
or from a time window (`window.window_spans`), read with partition EOF on so a
partition that reaches its end stops, and, for a window, the records outside
it dropped before decoding. One generator holds that loop so the two commands
cannot drift apart; the consumer is closed when the generator ends or is closed
(a caller that stops at a limit just leaves the loop).
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from replayer.consuming.spans import SpanReader, resolve_spans
from replayer.consuming.window import window_spans
from replayer.models import Record
from replayer.selecting.selector import SelectOptions, Selector
from trafficmirror.plumbing.clients import Consumer
from trafficmirror.plumbing.errors import KafkaUnavailable
from trafficmirror.plumbing.kafka import KafkaSettings


def read_records(
    settings: KafkaSettings,
    topic: str,
    partitions: list[int],
    start_offset: int | None,
    end_offset: int | None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> Generator[Record, None, None]:
    """The records of `topic`'s range (offsets) or window (`since_ms`..`until_ms`, Unix ms,
    until exclusive); `partitions` empty = all. Notes about the range go to stderr.
    Raises `TopicNotFound`/`OffsetOutOfRange` on bad input, `KafkaUnavailable` on a
    consumer failure."""
    windowed = since_ms is not None or until_ms is not None
    window = Selector(SelectOptions(since_ms=since_ms, until_ms=until_ms, methods=None))
    eof: dict[str, Any] = {"enable.partition.eof": True}
    consumer = Consumer(settings.consumer_config(None, **eof))
    try:
        if windowed:
            spans, notes = window_spans(settings, topic, partitions, since_ms, until_ms)
        else:
            spans, notes = resolve_spans(
                consumer, topic, partitions, start_offset, end_offset, settings.bootstrap_servers
            )
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        reader = SpanReader(spans)
        if spans:
            consumer.assign(reader.assignment(topic))
        while not reader.done:
            try:
                messages: list[Any] = consumer.consume(500, 0.2)
            except KafkaException as exc:
                raise KafkaUnavailable(f"Kafka consumer failed: {exc}") from exc
            for message in messages:
                error = message.error()
                if error is not None:
                    if reader.is_eof(error):
                        reader.end_of_partition(message.partition(), message.offset())
                    elif error.fatal():
                        raise KafkaUnavailable(f"Kafka consumer failed: {error.str()}")
                    continue
                if not reader.admit(message.partition(), message.offset()):
                    if message.partition() not in reader.open:
                        consumer.pause([TopicPartition(topic, message.partition())])
                    continue
                record = Record.from_message(message)
                if windowed and window.before_decode(record.key, record.timestamp_ms):
                    continue
                yield record
    finally:
        consumer.close()
