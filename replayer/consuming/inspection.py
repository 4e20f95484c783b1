"""`trafficmirror inspect`: print recorded events as JSON lines, like kcat for our events.

Each line is one JSON object: `kafka` (topic, partition, offset, timestamp,
key), a `dlq` object for a dead letter (`replayer.results.dlq.describe`), then
every field of the event, with bytes as text or base64 (`to_jsonable` says
how), or an `error` for a record that is not a valid event; reading goes on.
It reads a fixed range (the last offset present at start at most) and never
waits for new records; it exits 0 after the range or `--limit` events. A time
window (`--since`/`--until`) picks the spans through `replayer.consuming.window`
and prints only the records stamped inside it (until exclusive).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Mapping
from typing import IO, Any

from confluent_kafka import KafkaException, TopicPartition

from replayer.consuming.spans import SpanReader, resolve_spans
from replayer.consuming.window import window_spans
from replayer.models import Record
from replayer.results.dlq import describe
from replayer.selecting.selector import SelectOptions, Selector
from schemas.codec import Codec
from schemas.records import HttpExchange
from trafficmirror.plumbing.clients import Consumer
from trafficmirror.plumbing.errors import DecodeError, KafkaUnavailable, UsageError
from trafficmirror.plumbing.kafka import KafkaSettings

#: Fields that hold flat [name, value, ...] byte lists in the schema.
_PAIR_LISTS = frozenset({"headers", "trailers"})


def _is_text(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _convert(key: str, value: object, into: dict[str, object]) -> None:
    if isinstance(value, bytes):
        if _is_text(value):
            into[key] = value.decode("utf-8")
        else:
            into[f"{key}_base64"] = _b64(value)
    elif isinstance(value, Mapping):
        into[key] = to_jsonable(value)
    elif isinstance(value, list) and value and all(isinstance(v, bytes) for v in value):
        text = all(_is_text(v) for v in value)
        items = [v.decode("utf-8") if text else _b64(v) for v in value]
        shaped: list[str] | list[list[str]] = items
        if key in _PAIR_LISTS:
            shaped = [items[i : i + 2] for i in range(0, len(items) - 1, 2)]
        into[key if text else f"{key}_base64"] = shaped
    else:
        into[key] = value


def to_jsonable(event: Mapping[str, object]) -> dict[str, object]:
    """An event (as decoded) with bytes turned into text or base64.

    Bytes become text when they are valid UTF-8 and base64 otherwise, and the
    key says which, so a reader never has to guess: `body` or `body_base64`,
    `path` or `path_base64`, `reason` or `reason_base64`. Header and trailer
    lists become `[name, value]` pairs under `headers` (all text) or
    `headers_base64` (all base64, when any name or value is not UTF-8).
    """
    out: dict[str, object] = {}
    for key, value in event.items():
        _convert(key, value, out)
    return out


def record_json(record: Record, event: HttpExchange | None, error: str | None) -> str:
    """One output line (without the newline) for a record and its event or error."""
    kafka: dict[str, object] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
    }
    if record.key is None:
        kafka["key"] = None
    else:
        _convert("key", record.key, kafka)
    line: dict[str, object] = {"kafka": kafka}
    dead_letter = describe(record.headers)
    if dead_letter is not None:
        line["dlq"] = dead_letter
    if event is not None:
        line.update(to_jsonable(event))
    else:
        line["error"] = error
    return json.dumps(line, ensure_ascii=False)


def run_inspect(
    *,
    settings: KafkaSettings,
    topic: str,
    partitions: list[int],
    start_offset: int | None,
    end_offset: int | None,
    limit: int | None,
    schema_registry_url: str | None = None,
    out: IO[str] | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> int:
    """Print events of `topic` as JSON lines to `out` (stdout); returns the exit code (0).

    `partitions` empty = all; `start_offset` None = the earliest present;
    `end_offset` None = the last present at start; `limit` caps the events
    printed. `since_ms`/`until_ms` (Unix ms, until exclusive) is a time window
    instead of offsets. Raises `TopicNotFound`/`OffsetOutOfRange` on bad input.
    """
    out = out or sys.stdout
    window = Selector(SelectOptions(since_ms=since_ms, until_ms=until_ms, methods=None))
    windowed = since_ms is not None or until_ms is not None
    if windowed and (start_offset is not None or end_offset is not None):
        raise UsageError("a time window (since/until) and offsets cannot be combined")
    codec = Codec(registry_url=schema_registry_url)
    eof: dict[str, Any] = {"enable.partition.eof": True}
    consumer = Consumer(settings.consumer_config(None, **eof))
    printed = 0
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
        while not reader.done and (limit is None or printed < limit):
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
                try:
                    line = record_json(record, codec.decode_exchange(record.value), None)
                except DecodeError as exc:
                    line = record_json(record, None, str(exc))
                out.write(line + "\n")
                printed += 1
                if limit is not None and printed >= limit:
                    break
        out.flush()
    except BrokenPipeError:
        # `inspect | head`: the reader is gone, which is not an error. Point
        # stdout at /dev/null so the interpreter's final flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    finally:
        consumer.close()
    return 0
