"""WebSocket connections to the shadow: open with the recorded handshake, send, collect.

`WebSocketClient` holds one aiohttp client session for the replay (aiohttp
speaks the protocol: framing, masking, ping/pong, close handshake). Each
replayed session gets a `WebSocketConnection`: `start()` opens it in the
background with the prepared upgrade request's headers (the ones aiohttp
owns, the key, version, extensions and Host, are its own; a recorded
Sec-WebSocket-Protocol is offered as the subprotocols), `send()` queues a
client message, written in order once the connection is open, and every
message the shadow sends is kept as it arrives, with its time and how many
client messages went before it. What one connection keeps is capped
(`Caps`): past the cap messages are only counted. Nothing raises into the
caller: a failed handshake or a lost connection is recorded on the connection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
from yarl import URL

from replayer.models import OutgoingRequest, WebSocketMessage

logger = logging.getLogger(__name__)

#: Headers of the recorded handshake that aiohttp writes itself (or that describe
#: the recorded connection's own key and extensions).
_OWNED = frozenset(
    {
        "host",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "content-length",
    }
)


#: Close codes a peer must not send in a close frame (RFC 6455 section 7.4.1).
_NOT_SENT_CODES = frozenset({1004, 1005, 1006, 1015})


@dataclass(frozen=True, slots=True)
class Caps:
    """What one connection keeps of the shadow's messages (beyond it: counted only).

    `messages`: at most this many messages; `bytes`: at most this many payload
    bytes in all; `payload`: at most this many bytes of any one message (the
    rest is counted in its length). The largest message received at all is
    aiohttp's limit (`max_size`): a larger one closes the connection (1009).
    """

    messages: int = 1000
    bytes: int = 256 * 1024
    payload: int = 64 * 1024
    max_size: int = 4 * 1024 * 1024


@dataclass(slots=True)
class _Outgoing:
    """A queued client message; a `marker` is not sent, it marks how far writing got."""

    text: bool
    payload: bytes
    future: asyncio.Future[float]
    marker: bool = False


@dataclass(frozen=True, slots=True)
class Handshake:
    """The shadow's answer to the upgrade: its status and headers, or why there is none."""

    status: int | None
    headers: tuple[tuple[str, str], ...] = ()
    error: str | None = None
    latency: float = 0.0
    sent_at: float = 0.0


class WebSocketClient:
    """Opens the replay's WebSocket connections; one per replay, closed with the senders."""

    def __init__(self, *, timeout: float = 30.0, caps: Caps | None = None) -> None:
        self.timeout = timeout
        self.caps = caps or Caps()
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = None
        self.connections: set[WebSocketConnection] = set()

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No headers of aiohttp's own beyond the protocol's: the recorded ones are sent.
            self._session = aiohttp.ClientSession(
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                trust_env=False,
                connector=aiohttp.TCPConnector(limit=0, force_close=True),
            )
        return self._session

    def connect(self, request: OutgoingRequest) -> WebSocketConnection:
        """A connection for `request` (the prepared upgrade), opening in the background."""
        connection = WebSocketConnection(self, request)
        self.connections.add(connection)
        connection.start()
        return connection

    async def aclose(self) -> None:
        for connection in list(self.connections):
            await connection.abort()
        if self._session is not None:
            await self._session.close()
            self._session = None


class WebSocketConnection:
    """One replayed session's connection to the shadow (see the module doc)."""

    def __init__(self, client: WebSocketClient, request: OutgoingRequest) -> None:
        self.client = client
        self.request = request
        self.handshake: Handshake | None = None
        #: The shadow's messages as they arrived (the first `Caps.messages` of them).
        self.received: list[WebSocketMessage] = []
        #: All the shadow's messages, kept or not.
        self.received_count = 0
        self.sent_count = 0
        #: When the shadow closed: its close code (None if it sent none); see `closed_by_server`.
        self.close_code: int | None = None
        self.closed_by_server = False
        #: Why the connection failed after it opened, if it did.
        self.error: str | None = None
        self._kept_bytes = 0
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._queue: asyncio.Queue[_Outgoing] = asyncio.Queue()
        self._opened = asyncio.Event()
        self._arrived = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._run()))

    @property
    def open(self) -> bool:
        """True while messages can be sent: the handshake succeeded and nobody closed yet."""
        return self._ws is not None and not self._ws.closed and self.error is None

    def send(self, text: bool, payload: bytes) -> asyncio.Future[float]:
        """Queue a client message; the future is the time it was written, or raises why not."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if self._opened.is_set() and self._ws is None:  # never opened: no writer runs
            future.set_exception(ConnectionError(self._why_closed()))
        else:
            self._queue.put_nowait(_Outgoing(text, payload, future))
        return future

    async def opened(self) -> Handshake:
        """Wait for the handshake's outcome."""
        await self._opened.wait()
        assert self.handshake is not None  # noqa: S101 - set before the event
        return self.handshake

    async def settle(self, server_messages: int, wait_close: bool, timeout: float) -> None:
        """Wait until the queued messages are written, then (up to `timeout` seconds) until
        `server_messages` arrived, or the shadow closed (with `wait_close`, only that)."""
        await self._opened.wait()
        if self._ws is None:
            return
        marker: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Outgoing(False, b"", marker, marker=True))  # the queue's end
        try:
            await marker
        except ConnectionError:
            pass
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.open and (wait_close or self.received_count < server_messages):
            left = deadline - loop.time()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return

    async def close(self, code: int | None) -> None:
        """Close as the client (with `code`, default 1000) and stop the tasks."""
        ws = self._ws
        if ws is not None and not ws.closed:
            if code is None or code in _NOT_SENT_CODES or not 1000 <= code <= 4999:
                code = 1000  # a recorded 1006 (no close frame) cannot be sent as one
            try:
                await asyncio.wait_for(ws.close(code=code), self.client.timeout)
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass
        await self.abort()

    async def abort(self) -> None:
        """Stop at once: the tasks, the socket, every queued message (not sent)."""
        self.client.connections.discard(self)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        self._fail_queued("the session ended")
        if self.handshake is None:
            self.handshake = Handshake(None, error="cancelled before the handshake")
            self._opened.set()

    # -- the connection's tasks ---------------------------------------------------

    async def _run(self) -> None:
        request = self.request
        headers, protocols = _handshake_headers(request.headers)
        scheme = "wss" if request.target.scheme == "https" else "ws"
        url = URL(f"{scheme}://{request.target.host_port}{request.path}", encoded=True)
        sent_at, started = time.time(), time.perf_counter()
        context: ssl.SSLContext | bool = True
        if scheme == "wss":
            if self.client._ssl is None:
                self.client._ssl = ssl.create_default_context()
            context = self.client._ssl
        try:
            async with asyncio.timeout(self.client.timeout):
                ws = await self.client.session().ws_connect(
                    url,
                    method=request.method,
                    headers=headers,
                    protocols=protocols,
                    autoclose=False,
                    max_msg_size=self.client.caps.max_size,
                    ssl=context,
                )
        except aiohttp.WSServerHandshakeError as exc:
            self.handshake = Handshake(
                exc.status,
                tuple((k, v) for k, v in (exc.headers or {}).items()),
                f"handshake refused: {exc.status} {exc.message}",
                time.perf_counter() - started,
                sent_at,
            )
        except TimeoutError:
            self.handshake = Handshake(
                None, error=f"timeout after {self.client.timeout:g}s", sent_at=sent_at
            )
        except (aiohttp.ClientError, OSError) as exc:
            # Some errors quote the URL: never its query (a token a transform put there).
            error = _describe(exc).replace(request.path, request.path.partition("?")[0])
            self.handshake = Handshake(None, error=error, sent_at=sent_at)
        else:
            self._ws = ws
            # A connection that opened was answered 101; the chosen subprotocol is its header.
            chosen = (("Sec-WebSocket-Protocol", ws.protocol),) if ws.protocol else ()
            self.handshake = Handshake(101, chosen, None, time.perf_counter() - started, sent_at)
        finally:
            if self.handshake is None:  # cancelled (the replay stopped) while connecting
                self.handshake = Handshake(None, error="cancelled before the handshake")
            self._opened.set()
        if self._ws is None:
            self._fail_queued(self.handshake.error or "not connected")
            return
        reader = asyncio.get_running_loop().create_task(self._read(self._ws))
        self._tasks.append(reader)
        await self._write(self._ws)

    async def _write(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            item = await self._queue.get()
            if item.future.done():
                continue
            if item.marker:
                item.future.set_result(time.time())
                continue
            if not self.open:
                item.future.set_exception(ConnectionError(self._why_closed()))
                continue
            try:
                if item.text:
                    await ws.send_str(item.payload.decode("utf-8", "replace"))
                else:
                    await ws.send_bytes(item.payload)
            except (aiohttp.ClientError, OSError, RuntimeError) as exc:
                self.error = self.error or f"send failed: {_describe(exc)}"
                item.future.set_exception(ConnectionError(self.error))
                continue
            self.sent_count += 1
            item.future.set_result(time.time())

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        caps = self.client.caps
        while True:
            message = await ws.receive()
            now = time.time()
            if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                text = message.type == aiohttp.WSMsgType.TEXT
                data = message.data.encode("utf-8") if text else message.data
                self.received_count += 1
                if len(self.received) < caps.messages and self._kept_bytes < caps.bytes:
                    kept = data[: min(caps.payload, caps.bytes - self._kept_bytes)]
                    self._kept_bytes += len(kept)
                    self.received.append(
                        WebSocketMessage(
                            index=self.received_count - 1,
                            from_client=False,
                            text=text,
                            payload=kept,
                            length=len(data),
                            truncated=len(kept) < len(data),
                            after_client=self.sent_count,
                            at=now,
                        )
                    )
                self._arrived.set()
                continue
            if message.type == aiohttp.WSMsgType.CLOSE:
                self.closed_by_server = True
                self.close_code = ws.close_code
                await ws.close()
            elif message.type == aiohttp.WSMsgType.ERROR:
                self.error = f"connection failed: {_describe(ws.exception() or message.data)}"
            elif message.type not in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                continue  # PING / PONG: aiohttp answers them
            self._arrived.set()
            return

    def _why_closed(self) -> str:
        if self._ws is None and self.handshake is not None:
            return self.handshake.error or "not connected"
        if self.error:
            return self.error
        if self.closed_by_server:
            return f"the shadow closed the connection ({self.close_code})"
        return "the connection is closed"

    def _fail_queued(self, why: str) -> None:
        while not self._queue.empty():
            future = self._queue.get_nowait().future
            if not future.done():
                future.set_exception(ConnectionError(why))


def _handshake_headers(
    headers: Iterable[tuple[str, str]],
) -> tuple[list[tuple[str, str]], list[str]]:
    """The prepared request's headers minus those aiohttp owns; the offered subprotocols."""
    kept: list[tuple[str, str]] = []
    protocols: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "sec-websocket-protocol":
            protocols.extend(p.strip() for p in value.split(",") if p.strip())
        elif lowered not in _OWNED:
            kept.append((name, value))
    return kept, protocols


def _describe(exc: BaseException | object) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
