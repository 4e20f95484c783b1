"""A graceful stop: no new connections, exchanges in flight finish, the rest is recorded cut off.

`Drainer.drain(deadline)` closes mitmproxy's listening sockets (open
connections stay up: closing a server instance does not touch them), answers
what still arrives on open connections, marking HTTP/1 responses
`Connection: close` so that clients move on, closes a connection once it has
had no exchange under way for `IDLE_GRACE` seconds, and at the deadline
records every exchange still unfinished with `STOPPED_ERROR` before it closes
the connections left. `record` calls it on the first SIGTERM/SIGINT (the
second one cuts it short, `force()`); under `mitmdump -s` it runs in the
`done` hook, when mitmproxy has begun to shut down (see docs/reliability.md).
HTTP/2 connections get no GOAWAY (mitmproxy has no graceful one): they are
answered during the drain and closed when idle, like HTTP/1 ones. Open
WebSocket connections are closed at once with 1001, going away
(`recorder.wsclose`), so their end is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from mitmproxy import ctx, http

from recorder.event import ADDED_CONNECTION_CLOSE
from recorder.inflight import InFlight
from recorder.wsclose import close_going_away

logger = logging.getLogger(__name__)

#: The error recorded for an exchange still unfinished when the drain ends.
STOPPED_ERROR = "recorder stopped before the exchange finished"
#: Seconds a client connection may sit without an exchange under way before the
#: drain closes it (a client that sends its next request within this gets an
#: answer; an idle pooled connection does not hold the stop up).
IDLE_GRACE = 1.0
#: How often the drain looks at the connections.
POLL_SECONDS = 0.05
#: Seconds to let mitmproxy wind down the connections closed at the end.
CLOSE_GRACE = 2.0


class Records(Protocol):
    """What the drain needs from the recorder."""

    inflight: InFlight

    def record_unfinished(self, flow: http.HTTPFlow, error: str) -> None: ...


@dataclass(frozen=True)
class DrainReport:
    """How a drain went."""

    seconds: float
    #: Exchanges under way when it began.
    in_flight: int
    #: Exchanges recorded with STOPPED_ERROR because they had not finished.
    cut_off: int
    #: Client connections closed because they sat idle.
    idle_closed: int
    #: Client connections still open at the deadline, closed then.
    closed_at_end: int
    #: True if a second signal cut it short.
    forced: bool
    #: WebSocket connections closed with 1001 (going away) when it began.
    websockets_closed: int = 0


class Drainer:
    """mitmproxy addon that stops the proxy gracefully (see the module docstring).

    Place it before the recorder in the addon chain. `install_signals`: under
    `mitmdump`, a second SIGTERM/SIGINT during the drain in `done` cuts it
    short (mitmdump's own handlers would only ask for a shutdown that is
    already under way); `record` handles its signals itself.
    """

    def __init__(self, recorder: Records, *, install_signals: bool = True) -> None:
        self._recorder = recorder
        self._install_signals = install_signals
        self.draining = False
        #: True while a second signal would cut the drain short (for the log line).
        self.signals_cut_short = False
        self.report: DrainReport | None = None
        self._force: asyncio.Event | None = None
        self._forced = False
        self._running: asyncio.Future[DrainReport] | None = None

    # -- hooks ----------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if self.draining:
            close_after(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        # A response that was not streamed is sent after this hook: it can still
        # be marked if the drain began after its headers arrived.
        if self.draining and flow.response is not None and not flow.response.stream:
            close_after(flow)

    async def done(self) -> None:
        # Under `record` the drain ran before the shutdown; under mitmdump this is
        # the first the addon hears of it.
        if self.report is not None:
            return
        timeout = float(getattr(self._recorder, "drain_timeout", 0.0))
        handlers = self._watch_signals() if self._install_signals else []
        self.signals_cut_short = bool(handlers)
        try:
            await self.drain(time.monotonic() + timeout)
        finally:
            loop = asyncio.get_running_loop()
            for sig in handlers:
                loop.remove_signal_handler(sig)

    def _watch_signals(self) -> list[signal.Signals]:
        if threading.current_thread() is not threading.main_thread():
            return []
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.force)
                installed.append(sig)
        return installed

    # -- the drain --------------------------------------------------------------

    def _close_websockets(self, server: Any) -> int:
        """Close the WebSocket connections still open with 1001; how many."""
        websockets = getattr(self._recorder, "websockets", None)
        if websockets is None or server is None:
            return 0
        closed = 0
        for flow in websockets.open_flows():
            # Marked first: mitmproxy 12 may end the flow while the close is injected.
            websockets.mark_stopped(flow, True)
            if close_going_away(server, flow):
                closed += 1
            else:
                websockets.mark_stopped(flow, False)
        if closed:
            logger.info(
                "trafficmirror recorder: closing %d WebSocket connections with 1001 (going away)",
                closed,
            )
        return closed

    def force(self) -> None:
        """Cut the drain short: record what is unfinished and close every connection now."""
        self._forced = True
        if self._force is not None:
            self._force.set()

    async def drain(self, deadline: float) -> DrainReport:
        """Drain until `deadline` (`time.monotonic()`), or less if nothing is left.

        Once only: a later or concurrent call waits for the first and gets its report.
        """
        if self._running is None:
            self._running = asyncio.ensure_future(self._drain(deadline))
        return await asyncio.shield(self._running)

    async def _drain(self, deadline: float) -> DrainReport:
        started = time.monotonic()
        self._force = asyncio.Event()
        if self._forced:
            self._force.set()
        tracker = self._recorder.inflight
        in_flight = len(tracker)
        logger.info(
            "trafficmirror recorder: stopping: no new connections; %d exchanges in flight "
            "get up to %.3g s to finish%s",
            in_flight,
            max(0.0, deadline - started),
            " (signal again to stop at once)" if self.signals_cut_short else "",
        )
        server = _proxyserver()
        await _stop_listening(server)
        # Only now: a client told to close before the listener is gone would
        # reconnect into its backlog, and be reset when it closes.
        self.draining = True
        websockets_closed = self._close_websockets(server)
        closed: set[Any] = set()
        idle_closed = 0
        while not self._force.is_set():
            now = time.monotonic()
            handlers = _connections(server)
            if now >= deadline or not handlers:
                break
            busy = tracker.busy_connections()
            for conn_id, handler in handlers.items():
                if conn_id in busy or conn_id in closed:
                    continue
                if _idle_seconds(handler) >= IDLE_GRACE and _close(handler):
                    closed.add(conn_id)
                    idle_closed += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._force.wait(), min(POLL_SECONDS, deadline - now))
        # Record first, then close: closing makes mitmproxy report the flows as
        # errors, which the recorder then skips (each exchange is recorded once).
        unfinished = tracker.unfinished()
        for flow in unfinished:
            self._recorder.record_unfinished(flow, STOPPED_ERROR)
        handlers = _connections(server)
        closed_at_end = sum(
            1 for key, handler in handlers.items() if key not in closed and _close(handler)
        )
        await _wait_closed(server, list(handlers.values()), time.monotonic() + CLOSE_GRACE)
        self.report = DrainReport(
            seconds=time.monotonic() - started,
            in_flight=in_flight,
            cut_off=len(unfinished),
            idle_closed=idle_closed,
            closed_at_end=closed_at_end,
            forced=self._force.is_set(),
            websockets_closed=websockets_closed,
        )
        cut = f", recorded with the error {STOPPED_ERROR!r}" if unfinished else ""
        logger.log(
            logging.WARNING if unfinished else logging.INFO,
            "trafficmirror recorder: drained in %.2f s%s: %d exchanges were in flight at "
            "the signal; %d unfinished at the end%s; %d idle connections closed, %d still "
            "open at the end",
            self.report.seconds,
            " (cut short by a second signal)" if self.report.forced else "",
            in_flight,
            len(unfinished),
            cut,
            idle_closed,
            closed_at_end,
        )
        return self.report


def close_after(flow: http.HTTPFlow) -> None:
    """Mark an HTTP/1 response `Connection: close` (once), so the client moves on after it.

    The header goes first, where clients that read only the first Connection
    header see it too; the event leaves it out (`ADDED_CONNECTION_CLOSE`), as
    the app did not send it.
    """
    response = flow.response
    if (
        response is None
        or response.status_code == 101  # an upgrade: Connection says Upgrade, and must
        or not flow.request.http_version.startswith("HTTP/1")
        or ADDED_CONNECTION_CLOSE in flow.metadata
    ):
        return
    tokens = {
        t.strip().lower() for v in response.headers.get_all("connection") for t in v.split(",")
    }
    if "close" in tokens:
        return
    response.headers.insert(0, "connection", "close")
    flow.metadata[ADDED_CONNECTION_CLOSE] = True


# -- mitmproxy's proxy server, read with care: these are its internals (the
# same ones its idle timeout uses), guarded so a reshaped mitmproxy degrades to
# "close at the deadline" rather than failing the stop.


def _proxyserver() -> Any:
    try:
        master: Any = ctx.master
        return master.addons.get("proxyserver")
    except Exception:  # no master (a unit test's context)
        return None


async def _stop_listening(server: Any) -> None:
    servers = getattr(server, "servers", None)
    update = getattr(servers, "update", None)
    if update is None:
        return
    try:
        # No modes: every server instance stops, which closes its listening
        # sockets (asyncio.Server.close) and leaves open connections alone.
        await update([])
    except Exception as exc:  # keep stopping; the deadline still ends it
        logger.warning("trafficmirror recorder: could not stop listening: %s", exc)


def _connections(server: Any) -> dict[Any, Any]:
    return dict(getattr(server, "connections", None) or {})


def _client_task(handler: Any) -> asyncio.Task[Any] | None:
    transports = getattr(handler, "transports", None) or {}
    io = transports.get(getattr(handler, "client", None))
    task = getattr(io, "handler", None)
    return task if isinstance(task, asyncio.Task) else None


def _idle_seconds(handler: Any) -> float:
    watchdog = getattr(handler, "timeout_watchdog", None)
    last = getattr(watchdog, "last_activity", None)
    if last is None:
        return IDLE_GRACE
    return time.time() - float(last)


def _close(handler: Any) -> bool:
    """Close a client connection as mitmproxy's idle timeout does (cancel its reader)."""
    task = _client_task(handler)
    if task is None or task.done():
        return False
    task.cancel("trafficmirror recorder stopping")
    return True


async def _wait_closed(server: Any, handlers: list[Any], deadline: float) -> None:
    """Wait until mitmproxy has let go of every connection, and the hooks their
    closing started (error, client_disconnected) have run: nothing may be left
    for asyncio to cancel at exit."""
    while _connections(server) and time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS / 5)
    pending = [
        task
        for handler in handlers
        for task in list(getattr(handler, "hook_tasks", ()))
        if not task.done()
    ]
    if pending:
        await asyncio.wait(pending, timeout=max(0.01, deadline - time.monotonic()))
    await asyncio.sleep(0)
