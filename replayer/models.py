"""The record types the replay stages share, in the order a record meets them.

A Kafka `Record` is read (consuming), the event becomes an `OutgoingRequest` for
a `Target` (sending), the target answers with a `Response` or an error, both in
an `Outcome`, and the pipeline sums it up as a `Result`. A record that is not
sent on purpose raises `Skipped` (`Unsendable` when no valid request can be made
of it: a poison record for the dead-letter queue). They live here, not in the
module that makes them first, so every stage imports them from one place and no
stage imports another just for a type.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any
from urllib.parse import urlsplit

from trafficmirror.plumbing.errors import ConfigError

#: The port each scheme implies; a target or authority on it is written without one.
DEFAULT_PORTS = {"http": 80, "https": 443}


class Skipped(Exception):
    """The event is valid but deliberately not replayed; `reason` names the counter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Unsendable(Skipped):
    """No valid HTTP request can be made of the event: a poison record for the DLQ."""

    def __init__(self, detail: str) -> None:
        super().__init__("unsendable", detail)


@dataclass(frozen=True, slots=True)
class Target:
    """Where replayed requests go: scheme, host and port of the shadow."""

    scheme: str
    host_port: str

    @classmethod
    def parse(cls, url: str) -> Target:
        """Parse `http(s)://host[:port][/]`.

        A path or query would be silently ignored, so it is refused.
        """
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ConfigError(f"target {url!r} is not an http:// or https:// URL")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(
                f"target {url!r} has a path or query; only scheme, host and port are used "
                "(the recorded path is sent as it is)"
            )
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"target {url!r} has a bad port") from None
        host = parts.hostname
        if ":" in host:
            host = f"[{host}]"  # IPv6 literal
        if port is not None and port != DEFAULT_PORTS[parts.scheme]:
            host = f"{host}:{port}"
        return cls(parts.scheme, host)

    @property
    def origin(self) -> str:
        """`scheme://host[:port]`, the prefix of every replayed URL."""
        return f"{self.scheme}://{self.host_port}"


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    """A request ready to send: exact header list, exact body, raw path."""

    method: str
    target: Target
    path: str  # raw path with query, as recorded (already percent-encoded)
    headers: tuple[tuple[str, str], ...]
    body: bytes
    exchange_id: str
    # As recorded (HTTP/1.1, HTTP/2.0 ...): the transport picks HTTP/2 from it under
    # `--http-version auto`. Trailers as recorded (gRPC clients rarely send any).
    http_version: str = "HTTP/1.1"
    trailers: tuple[tuple[str, str], ...] = ()

    @property
    def url(self) -> str:
        """The absolute URL; transports must send `path` without re-quoting it."""
        return self.target.origin + self.path

    def header(self, name: str) -> str | None:
        """First value of header `name` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


#: The fields of `OutgoingRequest` a transform edits; `rebuilt` copies the others.
_EDITED = ("method", "path", "headers", "body")
_KEPT = tuple(f.name for f in fields(OutgoingRequest) if f.name not in _EDITED)
_SETTERS = {name: getattr(OutgoingRequest, name).__set__ for name in (*_EDITED, *_KEPT)}
_SET_METHOD, _SET_PATH, _SET_HEADERS, _SET_BODY = (_SETTERS[name] for name in _EDITED)
_COPY = tuple((attrgetter(name), _SETTERS[name]) for name in _KEPT)
_NEW = object.__new__


def rebuilt(
    request: OutgoingRequest,
    method: str,
    path: str,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
) -> OutgoingRequest:
    """`request` with these four fields, its others as they are (target, exchange id ...).

    Equal to `OutgoingRequest(...)` with every field given, built through the
    slots the frozen dataclass's `__init__` fills one `object.__setattr__` at a
    time: about three times cheaper, and it runs for every transformed request.
    """
    new: OutgoingRequest = _NEW(OutgoingRequest)
    _SET_METHOD(new, method)
    _SET_PATH(new, path)
    _SET_HEADERS(new, headers)
    _SET_BODY(new, body)
    for get, put in _COPY:
        put(new, get(request))
    return new


# Not frozen: built for every replayed record, and a frozen dataclass costs about
# twice as much to build (bench/replay.py); treat it as immutable all the same.
@dataclass(slots=True)
class Response:
    """What the shadow answered.

    `body` is all of it, or with `body_truncated` its first bytes only (the
    transport's cap, `replayer.sending.bodies`): then `body_length` is the
    whole length and `body_sha256` the SHA-256 (hex) of the whole body.
    """

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    reason: str = ""
    body_truncated: bool = False
    body_length: int | None = None
    body_sha256: str | None = None
    # Sent after the body (HTTP/2; gRPC puts grpc-status and grpc-message here).
    trailers: tuple[tuple[str, str], ...] = ()
    http_version: str = "HTTP/1.1"


# Not frozen: built for every replayed record, and a frozen dataclass costs about
# twice as much to build (bench/replay.py); treat it as immutable all the same.
@dataclass(slots=True)
class Outcome:
    """The result of sending one request: a response, or why there is none."""

    request: OutgoingRequest
    response: Response | None
    error: str | None
    sent_at: float  # time.time() when it went out
    latency: float  # seconds until the response was read (or the error)

    @property
    def ok(self) -> bool:
        """True when the shadow answered (any status: comparing it is a later stage)."""
        return self.response is not None


# Not frozen: built for every replayed record, and a frozen dataclass costs about
# twice as much to build (bench/replay.py); treat it as immutable all the same.
@dataclass(slots=True)
class Record:
    """One Kafka record and where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def size(self) -> int:
        """Bytes of key and value: what holding the record costs, roughly."""
        return len(self.key or b"") + len(self.value or b"")

    @classmethod
    def from_message(cls, message: Any) -> Record:
        """From a `confluent_kafka.Message` without an error."""
        kind, stamp = message.timestamp()
        return cls(
            topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
            key=message.key(),
            value=message.value(),
            timestamp_ms=stamp if kind != 0 else None,  # 0 = TIMESTAMP_NOT_AVAILABLE
            headers=tuple((k, v or b"") for k, v in message.headers() or ()),
        )


# Not frozen: built for every replayed record, and a frozen dataclass costs about
# twice as much to build (bench/replay.py); treat it as immutable all the same.
@dataclass(slots=True)
class Result:
    """How a record was handled: `sent`, `error`, `skipped`, `undecodable`, or `websocket`
    (a message or end of a WebSocket session: `detail` says which)."""

    record: Record
    kind: str
    detail: str | None = None  # error text or skip reason
    outcome: Outcome | None = None


# Not frozen, like `Response`: one is built for every WebSocket message replayed.
@dataclass(slots=True)
class WebSocketMessage:
    """One WebSocket message of a replayed session, recorded or received from the shadow.

    `index`: its position in the recorded connection (both directions counted),
    or for a shadow message its position among the shadow's messages. `payload`
    is all of it, or with `truncated` its first bytes of `length`. `after_client`:
    how many client messages had been sent before it (its place between them).
    `at`: `time.time()` when it was received (shadow) or written (client), None
    for a recorded message.
    """

    index: int
    from_client: bool
    text: bool
    payload: bytes
    length: int
    truncated: bool = False
    after_client: int = 0
    at: float | None = None
