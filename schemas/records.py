"""The Avro records as Python types: `HttpExchange`, `ReplayResult`, `ReplaySession`, `Alert`.

TypedDicts, one per record of the newest `*.avsc` of each schema, field for
field (tests/schemas/test_records.py fails when they drift apart). fastavro
reads and writes plain dicts, so a TypedDict types the data the recorder,
the replayer and the report pass around without costing anything per record:
no conversion on the recorder's or the replay's hot path. Every key is
required: the codec resolves every record into the newest schema, which fills
in what an older writer did not have. Avro `int` and `long` are `int`, `double`
is `float`, a union with null is `X | None`. Where a record's name is taken by
a class of the replayer, the type is named after what it holds
(`RecordedResponse` for the event's `Response`, `DifferenceRecord`). The
values of the event's `kind` are here too (`KIND_HTTP`, ...), spelled once.
"""

from __future__ import annotations

from typing import Final, TypedDict

# -- http_exchange: one recorded exchange --------------------------------------------

#: `HttpExchange.kind` of one HTTP exchange (a WebSocket upgrade included); the default.
KIND_HTTP: Final = "http"
#: `HttpExchange.kind` of one message of a WebSocket connection.
KIND_WEBSOCKET_MESSAGE: Final = "websocket_message"
#: `HttpExchange.kind` of the end of a WebSocket connection (its last event).
KIND_WEBSOCKET_END: Final = "websocket_end"
#: The kinds of a WebSocket connection's events after its upgrade.
WEBSOCKET_KINDS: Final = (KIND_WEBSOCKET_MESSAGE, KIND_WEBSOCKET_END)


class Address(TypedDict):
    """A socket address as the recorder saw it."""

    host: str
    port: int


class Message(TypedDict):
    """A request's or response's headers and body; header lists are flat name, value pairs."""

    headers: list[bytes]
    body: bytes
    body_truncated: bool
    body_length: int
    trailers: list[bytes] | None


class RecordedResponse(TypedDict):
    """Production's response as recorded (the schema's `Response` record)."""

    status: int
    reason: bytes
    http_version: str
    message: Message


class RecorderInfo(TypedDict):
    """Which recorder wrote the event, its sampling rate, what it redacted, how it captured."""

    recorder_id: str
    sampling_rate: float
    redactions: list[str]
    capture: str


class WebSocketEvent(TypedDict):
    """One WebSocket message, or the end of the connection (the schema's `WebSocketEvent`)."""

    upgrade_id: str
    index: int
    from_client: bool
    text: bool
    payload: bytes
    payload_truncated: bool
    payload_length: int
    close_code: int | None
    messages_not_recorded: int


class HttpExchange(TypedDict):
    """One recorded HTTP exchange (`http_exchange.v*.avsc` says what each field means)."""

    id: str
    request_start_us: int
    request_end_us: int | None
    response_start_us: int | None
    response_end_us: int | None
    client: Address
    server: Address | None
    scheme: str
    method: str
    authority: str
    path: bytes
    http_version: str
    request: Message
    response: RecordedResponse | None
    error: str | None
    recorder: RecorderInfo
    kind: str
    websocket: WebSocketEvent | None


# -- replay_result: the outcome of one replay ----------------------------------------


class SourceRecord(TypedDict):
    """Where the replayed event is stored in Kafka."""

    topic: str
    partition: int
    offset: int


class DifferenceRecord(TypedDict):
    """One difference between shadow and production (the schema's `Difference` record)."""

    kind: str
    path: str
    production: str | None
    shadow: str | None
    noise: bool


class BaselineReplay(TypedDict):
    """The replay of the same request to the baseline (a second copy of production)."""

    target: str
    status: int | None
    latency_us: int | None
    error: str | None


class ReplayResult(TypedDict):
    """The outcome of replaying one exchange (`replay_result.v*.avsc`)."""

    id: str
    run_id: str
    source: SourceRecord
    target: str
    replayer_id: str
    method: str
    path: str
    endpoint: str
    recorded_us: int
    sent_us: int
    lateness_us: int
    production_status: int | None
    production_latency_us: int | None
    production_error: str | None
    shadow_status: int | None
    shadow_latency_us: int | None
    error: str | None
    outcome: str
    mismatch_kinds: list[str]
    difference_count: int
    noise_count: int
    differences: list[DifferenceRecord]
    baseline: BaselineReplay | None
    capture: str
    transforms: list[str]
    shadow_body_length: int | None
    shadow_body_truncated: bool
    shadow_body_sha256: str | None


# -- replay_session: the settings a consumer group replays with ----------------------


class ReplaySession(TypedDict):
    """One revision of a group's replay session (`replay_session.v*.avsc`)."""

    group: str
    session_id: str
    revision: int
    anchor_us: int
    start_at_us: int
    speed: float | None
    rate: float | None
    since_us: int | None
    until_us: int | None
    created_at_us: int
    created_by: str


# -- alert: a finding of the security monitor -----------------------------------------


class StatusCount(TypedDict):
    """Responses with one status code in an alert's window."""

    status: int
    count: int


class AlertSource(TypedDict):
    """Where the exchange behind an alert is stored in Kafka."""

    topic: str
    partition: int
    offset: int


class Alert(TypedDict):
    """One finding of `trafficmirror monitor` (`alert.v*.avsc`)."""

    id: str
    kind: str
    severity: str
    message: str
    monitor_id: str
    detected_at_us: int
    window_start_us: int
    window_end_us: int
    client: str | None
    endpoint: str | None
    count: int
    observed_rate: float | None
    baseline_rate: float | None
    statuses: list[StatusCount]
    location: str | None
    detector: str | None
    exchange_ids: list[str]
    source: AlertSource | None
