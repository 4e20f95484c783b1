"""One WebSocket session being replayed, and its one result.

`Session` is what `wsreplay.WebSocketReplay` keeps of a recorded connection:
the upgrade and its prepared request, the connection to the shadow, the
recorded messages kept for the comparison (within the caps of
`sending.websocket.Caps`), counts, and the futures still waiting for the
session to end. `write_result()` compares an ended session (the handshake's
status and subprotocol, then the messages: `comparing.websocket`) and writes
its result through the comparison stage, endpoint `WS /path`;
`write_orphan_result()` writes the one `skipped` result of a connection whose
upgrade was not replayed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import cast

from prometheus_client import Counter

from replayer.comparing.diff import Difference
from replayer.comparing.noise import Rules
from replayer.comparing.view import ResponseView
from replayer.comparing.websocket import Close, SessionView, compare_session
from replayer.models import OutgoingRequest, Record, Result, WebSocketMessage
from replayer.results.stage import Comparison
from replayer.sending.websocket import Caps, WebSocketConnection
from replayer.transforming.chain import Prepared
from schemas.records import KIND_HTTP, HttpExchange, WebSocketEvent

_PROTOCOL = "sec-websocket-protocol"

MESSAGES = Counter(
    "trafficmirror_replayer_websocket_messages",
    "WebSocket messages of replayed sessions: client (sent to the shadow), "
    "server (recorded, expected from the shadow), shadow (received from the shadow).",
    ["side"],
)


def is_upgrade(event: HttpExchange) -> bool:
    """True for the upgrade that opened a recorded WebSocket connection (status 101)."""
    response = event["response"]
    if event["kind"] != KIND_HTTP or response is None or response["status"] != 101:
        return False
    flat = event["request"]["headers"]
    return any(
        flat[i].lower() == b"upgrade" and b"websocket" in flat[i + 1].lower()
        for i in range(0, len(flat) - 1, 2)
    )


@dataclass(eq=False)
class Session:
    """One recorded connection being replayed (see the module doc)."""

    record: Record
    event: HttpExchange
    request: OutgoingRequest
    hooks: Prepared | None
    future: asyncio.Future[Result]
    connection: WebSocketConnection | None = None
    recorded: list[WebSocketMessage] = field(default_factory=list)
    kept_bytes: int = 0
    server_count: int = 0
    client_count: int = 0
    next_index: int = 0
    gaps: bool = False  # a recorded message is missing (not read: a window, a range)
    unsent: list[tuple[int, str]] = field(default_factory=list)
    skipped_client: int = 0  # client messages not sent on purpose (truncated)
    pending: int = 0  # scheduled and not done yet
    end: WebSocketEvent | None = None
    end_futures: list[tuple[Record, asyncio.Future[Result]]] = field(default_factory=list)
    input_ended: bool = False
    finishing: bool = False
    lateness_us: int = 0
    applied: tuple[str, ...] = ()
    touched: float = field(default_factory=time.monotonic)

    def keep(self, ws: WebSocketEvent, caps: Caps) -> WebSocketMessage:
        """The recorded message of `ws`, kept for the comparison while the caps allow."""
        room = min(caps.payload, caps.bytes - self.kept_bytes)
        payload = ws["payload"][: max(room, 0)]
        message = WebSocketMessage(
            index=ws["index"],
            from_client=ws["from_client"],
            text=ws["text"],
            payload=payload,
            length=ws["payload_length"],
            truncated=ws["payload_truncated"] or len(payload) < len(ws["payload"]),
            after_client=self.client_count,
        )
        if len(self.recorded) < caps.messages and room > 0:
            self.recorded.append(message)
            self.kept_bytes += len(payload)
        return message


@dataclass
class Orphan:
    """Records of a connection whose upgrade was not replayed: the first, and how many."""

    record: Record
    event: HttpExchange
    count: int = 0


def write_result(comparison: Comparison, session: Session, skipped: str | None) -> None:
    """Compare the ended `session` (unless `skipped` says why not) and write its result."""
    connection = session.connection
    handshake = connection.handshake if connection is not None else None
    partition, offset = session.record.partition, session.record.offset
    target = session.request.target.origin
    if skipped is not None or connection is None or handshake is None:
        comparison.websocket_session(
            session.event,
            partition=partition,
            offset=offset,
            target=target,
            transforms=session.applied,
            sent_us=round(time.time() * 1_000_000),
            skipped=skipped or "the session ended before its upgrade was sent",
        )
        return
    view = None
    differences: list[Difference] = []
    if handshake.status is not None:
        view = ResponseView.of(handshake.status, handshake.headers)
        differences = _differences(session, connection, view, comparison.rules)
    MESSAGES.labels("shadow").inc(connection.received_count)
    comparison.websocket_session(
        session.event,
        sent_us=round(handshake.sent_at * 1_000_000),
        lateness_us=session.lateness_us,
        handshake=view,
        latency_s=handshake.latency,
        error=handshake.error,
        differences=differences,
        partition=partition,
        offset=offset,
        target=target,
        transforms=session.applied,
    )


def write_orphan_result(comparison: Comparison, upgrade_id: str, orphan: Orphan) -> None:
    """The one `skipped` result of a connection whose upgrade was not replayed."""
    event = cast(HttpExchange, {**orphan.event, "id": upgrade_id})
    comparison.websocket_session(
        event,
        partition=orphan.record.partition,
        offset=orphan.record.offset,
        target="",
        sent_us=round(time.time() * 1_000_000),
        skipped=f"websocket-no-upgrade: {orphan.count} records of a connection whose "
        "upgrade was not replayed (before the range, or not selected)",
    )


def _differences(
    session: Session, connection: WebSocketConnection, view: ResponseView, rules: Rules
) -> list[Difference]:
    if view.status != 101:
        return [Difference("status", "status", "101", str(view.status))]
    out: list[Difference] = []
    recorded_view = ResponseView.from_event(session.event)
    chosen = recorded_view.header_values(_PROTOCOL) if recorded_view is not None else []
    if chosen != view.header_values(_PROTOCOL):  # the subprotocol the server picked
        shown = [
            b", ".join(values).decode("latin-1") or None
            for values in (chosen, view.header_values(_PROTOCOL))
        ]
        out.append(Difference("header", _PROTOCOL, shown[0], shown[1]))
    end = session.end
    recorded_close = None if end is None else Close(end["from_client"], end["close_code"])
    if connection.closed_by_server:
        shadow_close = Close(False, connection.close_code)
    else:  # the replay closed it as production's client did, or it was still open
        shadow_close = Close(True if end is not None and end["from_client"] else None)
    recorded = SessionView(
        session.recorded,
        session.server_count,
        recorded_close,
        complete=end is not None and not session.gaps,
        unsent=session.unsent,
        skipped_client=session.skipped_client,
    )
    shadow = SessionView(connection.received, connection.received_count, shadow_close)
    return out + compare_session(recorded, shadow, rules)
