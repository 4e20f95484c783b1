"""WebSocket sessions in the replay: each recorded connection, upgrade to end.

The recorder writes a connection as its upgrade (an http event with status
101), one event per message and a last `websocket_end`, under its key, in
order. `WebSocketReplay` keeps a `wssession.Session` per upgrade replayed: the
upgrade opens a connection to the shadow at its due time (`sending.websocket`),
each client message goes at its own due time on the virtual clock (`--speed`,
`--max-gap` apply), each server message is kept as expected. At the end (its
due time, the end of a range, a stop, or `IDLE_SECONDS` idle) the shadow gets
`SETTLE_SECONDS` for its last messages, the connection is closed and the
session compared into ONE result, `WS /path`. The upgrade's future completes
only then, so offsets are committed past it only after that result. Messages
of a connection whose upgrade was not replayed are skipped, one result per
connection. Bounded: `MAX_OPEN_SESSIONS`, per session `sending.websocket.Caps`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

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
from replayer.sending.websocket import WebSocketClient
from replayer.transforming.chain import Prepared
from replayer.wssession import (
    MESSAGES,
    Orphan,
    Session,
    is_upgrade,
    write_orphan_result,
    write_result,
)
from schemas.records import KIND_WEBSOCKET_END, HttpExchange, WebSocketEvent

__all__ = ["WebSocketReplay", "is_upgrade"]

logger = logging.getLogger(__name__)

#: Seconds the shadow gets after a session's recorded end for its last messages.
SETTLE_SECONDS = 2.0
#: A session with no record for this long (wall clock, nothing waiting) is ended.
IDLE_SECONDS = 600.0
#: Sessions open at once; an upgrade beyond it is skipped (`websocket-too-many`).
MAX_OPEN_SESSIONS = 512
#: Connections whose upgrade was not replayed, remembered for their one result.
MAX_ORPHANS = 10_000


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
        self.sessions: dict[str, Session] = {}
        self._orphans: dict[str, Orphan] = {}
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
        session = Session(record, event, request, hooks, future)
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
        if event["kind"] == KIND_WEBSOCKET_END:
            return self._end(session, record, event, ws)
        if ws["index"] != session.next_index:
            session.gaps = True
        session.next_index = ws["index"] + 1
        message = session.keep(ws, self.client.caps)
        if not ws["from_client"]:
            session.server_count += 1
            MESSAGES.labels("server").inc()
            return self._done(record, Result(record, "websocket", "server-message"))
        if ws["payload_truncated"]:
            # Like a truncated request body: the first bytes would be a message nobody
            # sent. Not sent; the session is compared as incomplete.
            session.gaps = True
            session.skipped_client += 1
            return self._done(record, Result(record, "skipped", "truncated"))
        session.client_count += 1
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()

        def release(due: float | None) -> None:
            self._tasks_add(self._send(session, record, ws, message, due, future))

        def cancelled() -> None:
            future.cancel()
            self._maybe_finish(session)

        self._schedule(session, event["request_start_us"], release, cancelled)
        return future

    def _end(
        self, session: Session, record: Record, event: HttpExchange, ws: WebSocketEvent
    ) -> asyncio.Future[Result]:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        session.end = ws
        # Incomplete: a message not read or not recorded, or the recorder cut the
        # connection when it stopped (its end says why).
        if ws["index"] != session.next_index or ws["messages_not_recorded"] or event["error"]:
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
            orphan = self._orphans[ws["upgrade_id"]] = Orphan(record, event)
        if orphan is not None:
            orphan.count += 1
            if event["kind"] == KIND_WEBSOCKET_END:
                self._orphan_result(ws["upgrade_id"])
        return self._done(record, Result(record, "skipped", "websocket-no-upgrade"))

    def _orphan_result(self, upgrade_id: str) -> None:
        orphan = self._orphans.pop(upgrade_id, None)
        if orphan is not None and self.comparison is not None:
            write_orphan_result(self.comparison, upgrade_id, orphan)

    # -- scheduled steps ------------------------------------------------------------

    def _schedule(
        self,
        session: Session,
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

    async def _open(self, session: Session, due: float | None) -> None:
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
        session: Session,
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

    def _maybe_finish(self, session: Session) -> None:
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

    async def _finish(self, session: Session, settle: float) -> None:
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

    def _close_out(self, session: Session, skipped: str | None = None) -> None:
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
            write_result(self.comparison, session, skipped)
        if result is not None and not session.future.done():
            self.stats.add(result)
            session.future.set_result(result)
        for record, future in session.end_futures:
            if not future.done():
                self._settle_future(future, Result(record, "websocket", "end"))
        if not self.sessions:
            self._idle.set()

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
