"""Building the `HttpExchange` events an import writes, and small helpers on events.

An imported event is a normal event (the current schema), so replay, comparison
and report work on it unchanged. Its `recorder.recorder_id` says where it came
from (`import:har:traffic.har`), its `capture` is `proxy` when the file holds
production's response and `mirror` when it does not (a request-only GoReplay
capture): the replayer then compares against a baseline, as for `record
--mirror`. `MalformedFile` is the one error a reader raises.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Sequence

from schemas.records import Address, HttpExchange, Message, RecordedResponse, RecorderInfo
from trafficmirror.plumbing.errors import UsageError

CAPTURE_PROXY = "proxy"
CAPTURE_MIRROR = "mirror"
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICRO = datetime.timedelta(microseconds=1)


class MalformedFile(UsageError):
    """An input file is not valid in its format; the message names the entry or line."""


def origin(fmt: str, path: str, has_response: bool) -> RecorderInfo:
    """`RecorderInfo` of an event imported from `path` in format `fmt`."""
    return {
        "recorder_id": f"import:{fmt}:{os.path.basename(path)}",
        "sampling_rate": 1.0,
        "redactions": [],
        "capture": CAPTURE_PROXY if has_response else CAPTURE_MIRROR,
    }


def message(
    headers: list[bytes],
    body: bytes,
    trailers: list[bytes] | None = None,
    length: int | None = None,
) -> Message:
    """A `Message`; `length` is the whole body's length when `body` holds only its start."""
    whole = len(body) if length is None else max(length, len(body))
    return {
        "headers": headers,
        "body": body,
        "body_truncated": whole > len(body),
        "body_length": whole,
        "trailers": trailers,
    }


def response(status: int, reason: bytes, version: str, msg: Message) -> RecordedResponse:
    return {"status": status, "reason": reason, "http_version": version, "message": msg}


def pairs(flat: Sequence[bytes] | None) -> Iterator[tuple[bytes, bytes]]:
    """(name, value) pairs of a flat `[name, value, ...]` header list."""
    if not flat:
        return
    for i in range(0, len(flat) - 1, 2):
        yield flat[i], flat[i + 1]


def header(flat: Sequence[bytes] | None, name: bytes) -> bytes | None:
    """The first value of header `name` (lower case), or None."""
    for key, value in pairs(flat):
        if key.lower() == name:
            return value
    return None


def iso_time(us: int) -> str:
    """Microseconds since the epoch as ISO 8601 in UTC (`2026-12-02T17:20:00.123456+00:00`)."""
    return (_EPOCH + datetime.timedelta(microseconds=us)).isoformat(timespec="microseconds")


def parse_iso_us(text: str) -> int:
    """ISO 8601 (with a zone; none means UTC) as microseconds since the epoch; ValueError."""
    stamp = datetime.datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return (stamp - _EPOCH) // _MICRO


def target_address(event: HttpExchange) -> Address:
    """Where the request went: the recorded server, else the authority, else the scheme's port."""
    if event["server"] is not None and event["server"]["host"]:
        return event["server"]
    return split_authority(event["authority"], 443 if event["scheme"] == "https" else 80)


def split_authority(authority: str, default_port: int) -> Address:
    """`host:port`, `[v6]:port`, `host` or `v6` as an `Address`."""
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif authority.count(":") == 1:
        host, _, port = authority.partition(":")
    else:
        host, port = authority, ""
    return {"host": host, "port": int(port) if port.isdigit() else default_port}


def sort_key(event: HttpExchange) -> tuple[int, str]:
    """Recorded order: request start, then id."""
    return event["request_start_us"], event["id"]
