"""WebSocket sessions in the replay: the state of each recorded connection being replayed.

The recorder writes a WebSocket connection as its upgrade (an http event with
status 101), then one event per message and a last `websocket_end`, all under
the connection's key, in order. `WebSocketReplay` keeps one `_Session` per
upgrade the pipeline replays: the upgrade opens a connection to the shadow at
its due time (`sending.websocket`), each client message is sent at its own due
time on the virtual clock (so `--speed` and `--max-gap` apply as to requests),
each server message is kept as expected, and at the end (the end event's due
time, the end of a range, a stop, or `IDLE_SECONDS` without a record) the
shadow gets `SETTLE_SECONDS` for its last messages, the connection is closed
and the session compared (`comparing.websocket`) into ONE result, endpoint
`WS /path`. The upgrade's future completes only then, so its offset (and every
later one of the partition) is committed only after the session's result.
Messages of a connection whose upgrade this replay did not open are skipped
(`websocket-no-upgrade`), with one result per connection. Memory is bounded:
`MAX_OPEN_SESSIONS`, and per session the caps of `sending.websocket.Caps`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from prometheus_client import Counter

from replayer.comparing.diff import Difference
from replayer.comparing.responses import ResponseView
from replayer.comparing.websocket import Close, SessionView, compare_session
from replayer.models import (
    Outcome,
    OutgoingRequest,
    Record,
    Response,
    Result,
    Unsendable,
    WebSocketMessage,
)
from replayer.pacing.clock import Release, Scheduler
from replayer.results.stage import Comparison
from replayer.results.summary import Stats
from replayer.sending.websocket import WebSocketClient, WebSocketConnection
from replayer.transforming.chain import Prepared
from schemas.records import HttpExchange, WebSocketEvent

logger = logging.getLogger(__name__)

#: Event kinds of a WebSocket connection after its upgrade.
WEBSOCKET_KINDS = ("websocket_message", "websocket_end")
#: Seconds the shadow gets after a session's recorded end for its last messages.
SETTLE_SECONDS = 2.0
#: A session with no record for this long (wall clock, nothing waiting) is ended.
IDLE_SECONDS = 600.0
#: Sessions open at once; an upgrade beyond it is skipped (`websocket-too-many`).
MAX_OPEN_SESSIONS = 512
#: Connections whose upgrade was not replayed, remembered for their one result.
MAX_ORPHANS = 10_000

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
    if event["kind"] != "http" or response is None or response["status"] != 101:
        return False
    flat = event["request"]["headers"]
    return any(
        flat[i].lower() == b"upgrade" and b"websocket" in flat[i + 1].lower()
        for i in range(0, len(flat) - 1, 2)
    )


@dataclass(eq=False)
class _Session:
    """One recorded connection being replayed."""

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
    pending: int = 0  # scheduled and not done yet
    end: WebSocketEvent | None = None
    end_futures: list[tuple[Record, asyncio.Future[Result]]] = field(default_factory=list)
    input_ended: bool = False
    finishing: bool = False
    lateness_us: int = 0
    applied: tuple[str, ...] = ()
    touched: float = field(default_factory=time.monotonic)


@dataclass
class _Orphan:
    """Messages of a connection whose upgrade was not replayed."""

    record: Record
    event: HttpExchange
    count: int = 0


class WebSocketReplay:
    """The sessions of one replay (see the module doc); use it from the replay's loop."""

    def __init__(
        self,
        client: WebSocketClient,
        *,
        stats: Stats,
        scheduler: Scheduler | None = None,
        comparison: Comparison | None = None,
        settle: float = SETTLE_SECONDS,
    ) -> None:
        self.client = client
        self.stats = stats
        self.scheduler = scheduler
        self.comparison = comparison
        self.settle = settle
        self.sessions: dict[str, _Session] = {}
        self._orphans: dict[str, _Orphan] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def open(self) -> int:
        """Sessions not compared yet."""
        return len(self.sessions)

    # -- records --------------------------------------------------------------------

    def upgrade(
        self, record: Record, event: HttpExchange, request: OutgoingRequest, hooks: Prepared | None
    ) -> asyncio.Future[Result]:
        """Open a session for the upgrade `event`; the future completes when it is compared."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        if len(self.sessions) >= MAX_OPEN_SESSIONS or event["id"] in self.sessions:
            why = "websocket-too-many" if event["id"] not in self.sessions else "websocket-again"
            return self._done(record, Result(record, "skipped", why), event=event, skipped=why)
        session = _Session(record, event, request, hooks, future)
        self.sessions[event["id"]] = session
        self._idle.clear()
        self._arm_sweeper(loop)

        def release(due: float | None) -> None:
            self._tasks_add(self._open(session, due))

        self._schedule(session, event["request_start_us"], release)
        return future

    def message(self, record: Record, event: HttpExchange) -> asyncio.Future[Result]:
        """A message or end event: sent (client), kept as expected (server), or the end."""
        ws = event["websocket"]
        if ws is None:
            raise Unsendable(f"a {event['kind']} event without its websocket record")
        session = self.sessions.get(ws["upgrade_id"])
        if session is None or session.finishing:
            return self._orphan(record, event, ws)
        session.touched = time.monotonic()
        if event["kind"] == "websocket_end":
            return self._end(session, record, event, ws)
        if ws["index"] != session.next_index:
            session.gaps = True
        session.next_index = ws["index"] + 1
        message = self._keep(session, ws)
        if not ws["from_client"]:
            session.server_count += 1
            MESSAGES.labels("server").inc()
            return self._done(record, Result(record, "websocket", "server-message"))
        session.client_count += 1
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()

        def release(due: float | None) -> None:
            self._tasks_add(self._send(session, record, ws, message, due, future))

        def cancelled() -> None:
            future.cancel()
            self._maybe_finish(session)

        self._schedule(session, event["request_start_us"], release, cancelled)
        return future

    def _keep(self, session: _Session, ws: WebSocketEvent) -> WebSocketMessage:
        caps = self.client.caps
        room = min(caps.payload, caps.bytes - session.kept_bytes)
        payload = ws["payload"][: max(room, 0)]
        message = WebSocketMessage(
            index=ws["index"],
            from_client=ws["from_client"],
            text=ws["text"],
            payload=payload,
            length=ws["payload_length"],
            truncated=ws["payload_truncated"] or len(payload) < len(ws["payload"]),
            after_client=session.client_count,
        )
        if len(session.recorded) < caps.messages and room > 0:
            session.recorded.append(message)
            session.kept_bytes += len(payload)
        return message

    def _end(
        self, session: _Session, record: Record, event: HttpExchange, ws: WebSocketEvent
    ) -> asyncio.Future[Result]:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        session.end = ws
        if ws["index"] != session.next_index or ws["messages_not_recorded"]:
            session.gaps = True
        session.end_futures.append((record, future))

        def release(_: float | None) -> None:
            self._tasks_add(self._finish(session, self.settle))

        self._schedule(session, event["request_start_us"], release)
        return future

    def _orphan(
        self, record: Record, event: HttpExchange, ws: WebSocketEvent
    ) -> asyncio.Future[Result]:
        """A record of a connection this replay did not open: skipped, one result per connection."""
        orphan = self._orphans.get(ws["upgrade_id"])
        if orphan is None and len(self._orphans) < MAX_ORPHANS:
            orphan = self._orphans[ws["upgrade_id"]] = _Orphan(record, event)
        if orphan is not None:
            orphan.count += 1
            if event["kind"] == "websocket_end":
                self._orphan_result(ws["upgrade_id"])
        return self._done(record, Result(record, "skipped", "websocket-no-upgrade"))

    def _orphan_result(self, upgrade_id: str) -> None:
        orphan = self._orphans.pop(upgrade_id, None)
        if orphan is None or self.comparison is None:
            return
        event = cast(HttpExchange, {**orphan.event, "id": upgrade_id})
        self.comparison.websocket_session(
            event,
            partition=orphan.record.partition,
            offset=orphan.record.offset,
            target="",
            sent_us=round(time.time() * 1_000_000),
            skipped=f"websocket-no-upgrade: {orphan.count} records of a connection whose "
            "upgrade was not replayed (before the range, or not selected)",
        )

    # -- scheduled steps ------------------------------------------------------------

    def _schedule(
        self,
        session: _Session,
        recorded_us: int,
        release: Release,
        cancelled: Callable[[], None] | None = None,
    ) -> None:
        session.pending += 1

        def run(due: float | None) -> None:
            session.pending -= 1
            release(due)

        def gone() -> None:
            if cancelled is not None:
                cancelled()
            else:
                session.pending -= 1
                self._maybe_finish(session)

        if self.scheduler is None:
            run(None)
        else:
            self.scheduler.schedule(recorded_us, run, session.record.partition, gone)

    async def _open(self, session: _Session, due: float | None) -> None:
        request = session.request
        hooks = session.hooks
        if hooks is not None:
            try:
                request = await hooks.before(request)
            except Exception as exc:  # a transform skipped it: no session
                why = getattr(exc, "reason", "transform")
                session.future.set_result(Result(session.record, "skipped", why))
                self.stats.add(session.future.result())
                self._close_out(session, skipped=f"{why}: {exc}")
                return
            session.applied = tuple(hooks.context.applied)
            session.request = request
        session.connection = self.client.connect(request)
        handshake = await session.connection.opened()
        if hooks is not None:  # what the transforms learn from an answer (tokens, ids)
            response = None
            if handshake.status is not None:
                response = Response(handshake.status, handshake.headers)
            hooks.after(
                Outcome(request, response, handshake.error, handshake.sent_at, handshake.latency)
            )
        if due is not None:
            session.lateness_us = round((handshake.sent_at - due) * 1_000_000)
            self.stats.lateness.add(handshake.sent_at - due)
        self._maybe_finish(session)

    async def _send(
        self,
        session: _Session,
        record: Record,
        ws: WebSocketEvent,
        message: WebSocketMessage,
        due: float | None,
        future: asyncio.Future[Result],
    ) -> None:
        connection = session.connection
        try:
            if connection is None:
                raise ConnectionError("the connection was not opened")
            written = await connection.send(ws["text"], ws["payload"])
        except ConnectionError as exc:
            session.unsent.append((message.index, str(exc)))
            result = Result(record, "skipped", "websocket-not-connected")
        else:
            MESSAGES.labels("client").inc()
            message.at = written
            if due is not None:
                self.stats.lateness.add(written - due)
            result = Result(record, "websocket", "client-message")
        if not future.done():
            self.stats.add(result)
            future.set_result(result)
        self._maybe_finish(session)

    # -- ending -----------------------------------------------------------------------

    def _maybe_finish(self, session: _Session) -> None:
        if session.input_ended and not session.pending and not session.finishing:
            self._tasks_add(self._finish(session, self.settle))

    def end_of_input(self) -> None:
        """No more records come (the range is read): each session ends after its last one."""
        for session in list(self.sessions.values()):
            session.input_ended = True
            self._maybe_finish(session)
        for upgrade_id in list(self._orphans):
            self._orphan_result(upgrade_id)

    async def wait_closed(self, timeout: float) -> bool:
        """Wait until every session is compared; False if `timeout` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def finish_all(self) -> None:
        """Compare every open session now with what it has (the replay stops)."""
        for session in list(self.sessions.values()):
            session.input_ended = True
            if not session.finishing:
                self._tasks_add(self._finish(session, 0.0))
        for upgrade_id in list(self._orphans):
            self._orphan_result(upgrade_id)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def abandon(self, partitions: Iterable[int]) -> int:
        """Drop the sessions of `partitions` without a result: their records are read again."""
        wanted = set(partitions)
        dropped = [s for s in self.sessions.values() if s.record.partition in wanted]
        for session in dropped:
            session.finishing = True
            del self.sessions[session.event["id"]]
            session.future.cancel()
            for _, future in session.end_futures:
                future.cancel()
            if session.connection is not None:
                self._tasks_add(session.connection.abort())
        if not self.sessions:
            self._idle.set()
        return len(dropped)

    async def _finish(self, session: _Session, settle: float) -> None:
        if session.finishing:
            return
        session.finishing = True
        connection = session.connection
        end = session.end
        if connection is not None:
            server_closed = end is not None and not end["from_client"]
            await connection.settle(session.server_count, server_closed, settle)
            await connection.close(end["close_code"] if end is not None else None)
        self._close_out(session)

    def _close_out(self, session: _Session, skipped: str | None = None) -> None:
        """Compare (unless skipped), write the result, finish the session's futures."""
        self.sessions.pop(session.event["id"], None)
        session.finishing = True
        connection = session.connection
        handshake = connection.handshake if connection is not None else None
        if skipped is None and handshake is None:
            # Never sent (the replay stopped first): no result, its records are read again.
            session.future.cancel()
            for _, future in session.end_futures:
                future.cancel()
            if not self.sessions:
                self._idle.set()
            return
        result: Result | None = None
        if skipped is None and handshake is not None:
            kind = "sent" if handshake.status is not None else "error"
            result = Result(session.record, kind, handshake.error)
        if self.comparison is not None:
            self._write_result(session, skipped)
        if result is not None and not session.future.done():
            self.stats.add(result)
            session.future.set_result(result)
        for record, future in session.end_futures:
            if not future.done():
                self._settle_future(future, Result(record, "websocket", "end"))
        if not self.sessions:
            self._idle.set()

    def _write_result(self, session: _Session, skipped: str | None) -> None:
        comparison = self.comparison
        assert comparison is not None  # noqa: S101 - checked by the caller
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
            differences = self._differences(session, connection, view)
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

    def _differences(
        self, session: _Session, connection: WebSocketConnection, view: ResponseView
    ) -> list[Difference]:
        out: list[Difference] = []
        if view.status != 101:
            out.append(Difference("status", "status", "101", str(view.status)))
            return out
        recorded_view = ResponseView.from_event(session.event)
        chosen = recorded_view.header_values(_PROTOCOL) if recorded_view is not None else []
        if chosen != view.header_values(_PROTOCOL):  # the subprotocol the server picked
            shown = [
                b", ".join(values).decode("latin-1") or None
                for values in (chosen, view.header_values(_PROTOCOL))
            ]
            out.append(Difference("header", _PROTOCOL, shown[0], shown[1]))
        end = session.end
        complete = end is not None and not session.gaps
        recorded_close = None
        if end is not None:
            recorded_close = Close(end["from_client"], end["close_code"])
        if connection.closed_by_server:
            shadow_close = Close(False, connection.close_code)
        else:
            shadow_close = Close(True if end is not None and end["from_client"] else None)
        recorded = SessionView(
            session.recorded,
            session.server_count,
            recorded_close,
            complete=complete,
            unsent=session.unsent,
        )
        shadow = SessionView(connection.received, connection.received_count, shadow_close)
        rules = self.comparison.rules if self.comparison is not None else None
        return out + compare_session(recorded, shadow, rules)

    # -- helpers ------------------------------------------------------------------------

    def _done(
        self,
        record: Record,
        result: Result,
        *,
        event: HttpExchange | None = None,
        skipped: str | None = None,
    ) -> asyncio.Future[Result]:
        if event is not None and skipped is not None and self.comparison is not None:
            self.comparison.websocket_session(
                event,
                partition=record.partition,
                offset=record.offset,
                target="",
                sent_us=round(time.time() * 1_000_000),
                skipped=skipped,
            )
        self.stats.add(result)
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        future.set_result(result)
        return future

    def _settle_future(self, future: asyncio.Future[Result], result: Result) -> None:
        self.stats.add(result)
        future.set_result(result)

    def _tasks_add(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("WebSocket session step failed", exc_info=task.exception())

    def _arm_sweeper(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sweeper is None:
            self._sweeper = loop.call_later(IDLE_SECONDS / 10, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweeper = None
        limit = time.monotonic() - IDLE_SECONDS
        for session in list(self.sessions.values()):
            if session.touched < limit and not session.pending:
                session.input_ended = True
                self._maybe_finish(session)
        if self.sessions:
            self._arm_sweeper(loop)

    def close(self) -> None:
        """Stop the idle timer (the replay's loop is ending)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
