"""WebSocket connections recorded as their messages: one event per message, one at the end.

mitmproxy calls `response` for the `101` upgrade (the recorder writes it as an
`http` event) before `websocket_start`, then `websocket_message` for each whole
message and `websocket_end` once. `WebSocketRecorder`, a child addon of the
`Recorder`, writes a `websocket_message` event per message and a
`websocket_end` event at the end, with the upgrade's Kafka key (the client
connection), so a partition holds the upgrade, then the messages in order,
then the end. Only connections whose upgrade the recorder kept are recorded
(a filtered upgrade records no messages). Payloads are cut at the body cap;
mitmproxy keeps every message of a connection in `flow.websocket.messages`,
so each one is dropped from that list once seen (recorded or not): memory
stays bounded by the cap, however long the connection lives.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from mitmproxy import http
from mitmproxy.websocket import WebSocketMessage
from prometheus_client import Counter

from recorder.event import address, authority, micros, text
from recorder.redact import Redactor
from recorder.sink import KafkaSink
from schemas.codec import Codec
from schemas.records import (
    KIND_WEBSOCKET_END,
    KIND_WEBSOCKET_MESSAGE,
    HttpExchange,
    Message,
    RecorderInfo,
)
from trafficmirror.plumbing.logs import Throttle

logger = logging.getLogger(__name__)

#: `HttpExchange.error` of a `websocket_end` the recorder caused by stopping.
STOPPED_ERROR = "recorder stopped: the WebSocket connection was closed with 1001 (going away)"

WS_SEEN = Counter(
    "trafficmirror_recorder_websocket_seen",
    "WebSocket events taken for recording, by kind (message, end): messages and ends of "
    "connections whose upgrade the recorder kept. They are counted in recorded, dropped "
    "and failed like exchanges.",
    ["kind"],
)
WS_NOT_RECORDED = Counter(
    "trafficmirror_recorder_websocket_messages_not_recorded",
    "WebSocket messages that could not be queued for Kafka (queue full, produce or convert "
    "failed); each websocket_end event carries its connection's count.",
)
_SEEN_MESSAGE = WS_SEEN.labels("message")
_SEEN_END = WS_SEEN.labels("end")

_EMPTY: Message = {
    "headers": [],
    "body": b"",
    "body_truncated": False,
    "body_length": 0,
    "trailers": None,
}


class Host(Protocol):
    """What the WebSocket recorder needs from the `Recorder` it belongs to."""

    sink: KafkaSink | None
    codec: Codec | None
    max_body_bytes: int
    redactor: Redactor

    def kept(self, flow: http.HTTPFlow) -> bool:
        """True if the recorder took `flow` (the upgrade) for recording."""
        ...

    def info_for(self, flow: http.HTTPFlow) -> RecorderInfo:
        """The `RecorderInfo` the recorder gave (or gives) `flow`'s event."""
        ...


@dataclass
class Session:
    """One recorded WebSocket connection: what its events share, and its counters."""

    flow: http.HTTPFlow
    #: The upgrade's fields every event of the connection copies.
    template: HttpExchange
    #: Messages seen so far (the next message's index).
    index: int = 0
    #: Messages seen but not queued for Kafka.
    not_recorded: int = 0
    #: Set when the recorder itself closed the connection (a stop).
    error: str | None = None


class WebSocketRecorder:
    """Child addon of the `Recorder`: WebSocket messages and ends as events (see the module)."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._sessions: dict[str, Session] = {}
        #: Open connections not recorded (filtered, not recording): a stop closes them too.
        self._others: dict[str, http.HTTPFlow] = {}
        self._throttle = Throttle()
        #: Messages of recorded connections seen (each is recorded, dropped or failed).
        self.messages = 0
        #: Ends of recorded connections seen (each is recorded, dropped or failed).
        self.ends = 0
        #: Messages not queued for Kafka (queue full, produce or convert failed).
        self.messages_not_recorded = 0
        #: Events (messages and ends) that could not be built or encoded.
        self.convert_failed = 0

    # -- mitmproxy hooks --------------------------------------------------------

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        host = self._host
        if host.sink is None or flow.is_replay or not host.kept(flow):
            self._others[flow.id] = flow
            return
        try:
            self._sessions[flow.id] = Session(flow, self._template(flow))
        except Exception as exc:  # policy: recording never breaks the live flow
            self._others[flow.id] = flow  # unrecorded, like a filtered one
            self._warn(flow, exc)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        data = flow.websocket
        if data is None or not data.messages:
            return
        try:
            session = self._sessions.get(flow.id)
            if session is not None:
                self._record_message(flow, session, data.messages[-1])
        finally:
            # mitmproxy would keep every message of the connection, recorded or not, and
            # nothing needs them once seen. It relays the message from its own reference,
            # not from this list; keep the newest for addons after this one (`messages[-1]`).
            del data.messages[:-1]

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._others.pop(flow.id, None)
        session = self._sessions.pop(flow.id, None)
        data = flow.websocket
        if session is None or data is None:
            return
        self.ends += 1
        _SEEN_END.inc()
        ended = data.timestamp_end or time.time()
        try:
            reason = (data.close_reason or "").encode("utf-8", "surrogateescape")
            event = self._event(session, KIND_WEBSOCKET_END, f"{flow.id}/end", ended)
            event["error"] = session.error
            event["websocket"] = {
                "upgrade_id": flow.id,
                "index": session.index,
                "from_client": bool(data.closed_by_client),
                "text": False,
                "payload": reason[: self._host.max_body_bytes],
                "payload_truncated": len(reason) > self._host.max_body_bytes,
                "payload_length": len(reason),
                "close_code": data.close_code,
                "messages_not_recorded": session.not_recorded,
            }
            self._send(flow, event, ended)
        except Exception as exc:  # policy: recording never breaks the live flow
            self.convert_failed += 1
            self._warn(flow, exc)

    # -- the drain's side -------------------------------------------------------

    def open_flows(self) -> list[http.HTTPFlow]:
        """The WebSocket connections still open, recorded or not, recorded ones first."""
        return [session.flow for session in self._sessions.values()] + list(self._others.values())

    def mark_stopped(self, flow: http.HTTPFlow, stopped: bool) -> None:
        """Note that the recorder is closing `flow`'s connection (its end event says so),
        or, `stopped` False, that it could not after all."""
        session = self._sessions.get(flow.id)
        if session is not None:
            session.error = STOPPED_ERROR if stopped else None

    def reset(self) -> None:
        """Start the counters again from 0 (after the summary); forget open connections."""
        self._sessions.clear()
        self._others.clear()
        self.messages = self.ends = self.messages_not_recorded = self.convert_failed = 0

    # -- building and sending ---------------------------------------------------

    def _template(self, flow: http.HTTPFlow) -> HttpExchange:
        host = self._host
        request = flow.request
        notes: list[str] = []
        path = request.data.path
        if host.redactor.active:
            path = host.redactor.redact_path(path, notes)
        info = host.info_for(flow)
        if notes:
            info = {**info, "redactions": [*info["redactions"], *notes]}
        client = flow.client_conn
        return {
            "id": flow.id,
            "request_start_us": 0,
            "request_end_us": None,
            "response_start_us": None,
            "response_end_us": None,
            "client": address(client.peername) or {"host": "", "port": 0},
            "server": address(flow.server_conn.peername),
            "scheme": "https" if client.tls else "http",
            "method": text(request.data.method),
            "authority": authority(request),
            "path": path,
            "http_version": text(request.data.http_version),
            "request": _EMPTY,
            "response": None,
            "error": None,
            "recorder": info,
            "kind": KIND_WEBSOCKET_MESSAGE,
            "websocket": None,
        }

    def _record_message(
        self, flow: http.HTTPFlow, session: Session, message: WebSocketMessage
    ) -> None:
        """Write `message` of a recorded connection as an event; counted, never raised."""
        index = session.index
        session.index += 1
        self.messages += 1
        _SEEN_MESSAGE.inc()
        queued = False
        try:
            payload, truncated, notes = self._payload(message.content, message.is_text)
            event = self._event(
                session, KIND_WEBSOCKET_MESSAGE, f"{flow.id}/{index}", message.timestamp
            )
            event["websocket"] = {
                "upgrade_id": flow.id,
                "index": index,
                "from_client": message.from_client,
                "text": message.is_text,
                "payload": payload,
                "payload_truncated": truncated,
                "payload_length": len(message.content),
                "close_code": None,
                "messages_not_recorded": 0,
            }
            if notes:
                info = event["recorder"]
                event["recorder"] = {**info, "redactions": [*info["redactions"], *notes]}
            queued = self._send(flow, event, message.timestamp)
        except Exception as exc:  # policy: recording never breaks the live flow
            self.convert_failed += 1
            self._warn(flow, exc)
        if not queued:
            session.not_recorded += 1
            self.messages_not_recorded += 1
            WS_NOT_RECORDED.inc()

    def _event(self, session: Session, kind: str, event_id: str, when: float) -> HttpExchange:
        event = session.template.copy()
        event["id"] = event_id
        event["kind"] = kind
        event["request_start_us"] = micros(when)
        return event

    def _payload(self, content: bytes, is_text: bool) -> tuple[bytes, bool, list[str]]:
        """The payload to record, whether it was cut, and what was redacted.

        The body redaction rules apply to text messages that hold JSON, as to a
        JSON body; a text message they cannot parse (cut at the cap) is dropped,
        keeping only its length (fail closed, like a body).
        """
        cap = self._host.max_body_bytes
        notes: list[str] = []
        redactor = self._host.redactor
        if is_text and redactor.active:
            redacted = redactor.redact_body(content, [], cap, "websocket", notes)
            if redacted is None:
                return b"", True, notes
            content = redacted
        if len(content) > cap:
            return content[:cap], True, notes
        return content, False, notes

    def _send(self, flow: http.HTTPFlow, event: HttpExchange, when: float) -> bool:
        """Encode and queue `event` with the upgrade's key; True if queued."""
        sink, codec = self._host.sink, self._host.codec
        if sink is None or codec is None:  # stopped: counted as failed, like a broken event
            raise RuntimeError("the recorder's sink is closed")
        encoded = codec.encode(event)
        return sink.send(
            flow.client_conn.id.encode(), encoded.value, encoded.headers, int(when * 1000)
        )

    def _warn(self, flow: http.HTTPFlow, exc: Exception) -> None:
        if self._throttle.allow():
            logger.warning(
                "trafficmirror: cannot record a WebSocket event of %s: %s: %s (%d so far)",
                flow.id,
                type(exc).__name__,
                exc,
                self.convert_failed,
            )
