"""`trafficmirror inspect`: print recorded events as a table or JSON lines, like kcat.

The table (`table_line`, the default on a terminal) is one line per event:
partition:offset, request time, method, authority, path, status, body sizes,
latency; `bodies` adds the bodies under each line. The JSON form (the default
when stdout is not a terminal, as before) is one object per line: `kafka`
(topic, partition, offset, timestamp, key), a `dlq` object for a dead letter
(`replayer.results.dlq.describe`), then every field of the event, with bytes
as text or base64 (`to_jsonable` says how), bodies left out when not wanted,
or an `error` for a record that is not a valid event; reading goes on.
It reads a fixed range (the last offset present at start at most) and never
waits for new records; it exits 0 after the range or `--limit` events. A time
window (`--since`/`--until`) picks the spans through `replayer.consuming.window`
and prints only the records stamped inside it (until exclusive).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import sys
from collections.abc import Mapping
from typing import IO

from replayer.consuming.topic_reader import read_records
from replayer.models import Record
from replayer.results.dlq import describe
from schemas.codec import Codec
from schemas.records import HttpExchange
from trafficmirror.plumbing.errors import DecodeError, UsageError
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


def _without_bodies(event: Mapping[str, object]) -> dict[str, object]:
    """A JSON-ready event without `body`/`body_base64` (the lengths stay)."""
    out = dict(event)
    for outer, inner in (("request", None), ("response", "message")):
        part = out.get(outer)
        if not isinstance(part, dict):
            continue
        part = dict(part)
        out[outer] = part
        if inner is not None:
            message = part.get(inner)
            if not isinstance(message, dict):
                continue
            part[inner] = message = dict(message)
            part = message
        part.pop("body", None)
        part.pop("body_base64", None)
    return out


def record_json(
    record: Record, event: HttpExchange | None, error: str | None, bodies: bool = True
) -> str:
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
        fields = to_jsonable(event)
        line.update(fields if bodies else _without_bodies(fields))
    else:
        line["error"] = error
    return json.dumps(line, ensure_ascii=False)


# -- table --------------------------------------------------------------------------

#: (title, width) of the table's columns; the path takes what is left.
_COLUMNS = (
    ("OFFSET", 10),
    ("TIME (UTC)", 23),
    ("METHOD", 7),
    ("AUTHORITY", 24),
    ("STATUS", 6),
    ("REQ", 7),
    ("RESP", 7),
    ("ms", 7),
)


def table_header() -> str:
    """The column titles of `table_line`."""
    return " ".join(title.ljust(width) for title, width in _COLUMNS) + "  PATH"


def _size(length: int, truncated: bool) -> str:
    """`532`, `12.5K`, `1.0M`; `+` when the stored body was cut at the cap."""
    if length < 10_000:
        text = str(length)
    elif length < 10_000_000:
        text = f"{length / 1024:.1f}K"
    else:
        text = f"{length / 1048576:.1f}M"
    return text + ("+" if truncated else "")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _printable(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "\\x%02x" % ord(c) for c in text)


def table_line(record: Record, event: HttpExchange | None, error: str | None) -> str:
    """One table line: where, when, what, how big, how long; or the record's error."""
    where = f"{record.partition}:{record.offset}"
    if event is None:
        return f"{where.ljust(10)} error: {error}"
    when = dt.datetime.fromtimestamp(event["request_start_us"] / 1e6, dt.timezone.utc)
    response = event["response"]
    if response is not None:
        status = str(response["status"])
        resp = _size(response["message"]["body_length"], response["message"]["body_truncated"])
    else:
        status = "ERR" if event["error"] else "-"
        resp = "-"
    request = event["request"]
    end = event["response_end_us"] or event["response_start_us"]
    latency = "-" if end is None else f"{(end - event['request_start_us']) / 1000:.1f}"
    cells = [
        where,
        when.strftime("%Y-%m-%d %H:%M:%S.%f")[:23],
        event["method"],
        _cut(_printable(event["authority"].encode()), 24),
        status,
        _size(request["body_length"], request["body_truncated"]),
        resp,
        latency,
    ]
    line = " ".join(c.ljust(w) for c, (_, w) in zip(cells, _COLUMNS, strict=True))
    path = _printable(event["path"])
    if describe(record.headers) is not None:
        path += "  (dead letter)"
    return f"{line}  {path}"


def table_bodies(event: HttpExchange | None) -> list[str]:
    """The request and response bodies under a table line (text; binary as a note)."""
    if event is None:
        return []
    parts = [("request", event["request"]["body"])]
    if event["response"] is not None:
        parts.append(("response", event["response"]["message"]["body"]))
    lines = []
    for name, body in parts:
        if not body:
            continue
        if _is_text(body):
            text = body.decode("utf-8")
            lines.append(f"    {name} body:")
            lines.extend(f"      {line}" for line in text.splitlines() or [""])
        else:
            lines.append(f"    {name} body: {len(body)} bytes, not UTF-8 (--format json has it)")
    return lines


def _output(record: Record, codec: Codec, table: bool, bodies: bool) -> str:
    """The output of one record: a table line (and bodies) or a JSON line, with its newline."""
    event: HttpExchange | None = None
    error: str | None = None
    try:
        event = codec.decode_exchange(record.value)
    except DecodeError as exc:
        error = str(exc)
    if not table:
        return record_json(record, event, error, bodies) + "\n"
    lines = [table_line(record, event, error)]
    lines += table_bodies(event) if bodies else []
    return "\n".join(lines) + "\n"


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
    table: bool = False,
    bodies: bool = True,
) -> int:
    """Print events of `topic` to `out` (stdout); returns the exit code (0).

    JSON lines, or with `table` one table line per event (a header first, a
    count last); `bodies` False leaves the bodies out of the JSON, True adds
    them under the table lines. `partitions` empty = all; `start_offset` None
    = the earliest present; `end_offset` None = the last present at start;
    `limit` caps the events printed. `since_ms`/`until_ms` (Unix ms, until
    exclusive) is a time window instead of offsets. Raises
    `TopicNotFound`/`OffsetOutOfRange` on bad input.
    """
    out = out or sys.stdout
    windowed = since_ms is not None or until_ms is not None
    if windowed and (start_offset is not None or end_offset is not None):
        raise UsageError("a time window (since/until) and offsets cannot be combined")
    codec = Codec(registry_url=schema_registry_url)
    printed = 0
    records = read_records(
        settings, topic, partitions, start_offset, end_offset, since_ms, until_ms
    )
    try:
        header = table  # written once the range is known to exist (errors come first)
        for record in records:
            if header:
                out.write(table_header() + "\n")
                header = False
            out.write(_output(record, codec, table, bodies))
            printed += 1
            if limit is not None and printed >= limit:
                break
        if header:
            out.write(table_header() + "\n")
        if table:
            out.write(f"{printed} event{'s' if printed != 1 else ''}\n")
        out.flush()
    except BrokenPipeError:
        # `inspect | head`: the reader is gone, which is not an error. Point
        # stdout at /dev/null so the interpreter's final flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    finally:
        records.close()
    return 0
