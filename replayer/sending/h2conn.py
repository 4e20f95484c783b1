"""One HTTP/2 connection of the replayer's client: many requests at once, as streams.

`H2Connection` is the asyncio protocol `replayer.sending.http2.Http2Transport`
keeps per target. `jh2` (h2's sans-IO state machine, with a compiled HPACK
coder) holds the protocol state; this module moves its bytes and turns its
events into `Response`s. It waits for the server's SETTINGS before the first
stream (a server that answers the h2c preface otherwise, in HTTP/1.1, is found
before any request is written), keeps to the server's concurrent-stream limit
and flow-control windows, sends request trailers, collects response trailers,
and keeps at most a cap of each response body (`replayer.sending.bodies`). A
stream the server did not process (above a GOAWAY's last stream id, or
refused) raises `Unprocessed`: sending it again cannot send it twice.
"""

from __future__ import annotations

import asyncio
from collections import deque

import jh2.config
import jh2.connection
import jh2.events
import jh2.exceptions
import jh2.settings
from jh2.errors import ErrorCodes

from replayer.models import Response
from replayer.sending.bodies import BodyBudget, BodyCollector

#: Our receive window per stream and per connection: bodies stream in without a
#: round trip per 64 KiB (h2's default); what is kept of them is capped anyway.
RECEIVE_WINDOW = 4 * 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024

Headers = list[tuple[bytes, bytes]]


class Unprocessed(ConnectionError):
    """The server did not process this request (not written, GOAWAY, REFUSED_STREAM)."""


class NotH2(ConnectionError):
    """The server does not speak HTTP/2 on this connection (it answered the preface otherwise)."""


def _text(raw: bytes) -> str:
    """A response header's bytes as text, as `h1response` does: latin-1, so the comparison
    (`ResponseView.of`) gets the same bytes back whatever the protocol."""
    return raw.decode("latin-1")


class _Stream:
    __slots__ = ("body", "done", "headers", "status", "trailers")

    def __init__(self, body: BodyCollector, done: asyncio.Future[Response]) -> None:
        self.body = body
        self.done = done
        self.status = 0
        self.headers: tuple[tuple[str, str], ...] = ()
        self.trailers: tuple[tuple[str, str], ...] = ()


class H2Connection(asyncio.Protocol):
    """One client connection; `request()` may be awaited by many tasks at once.

    `ready` completes when the server's SETTINGS arrived (or fails with
    `NotH2`, or a `ConnectionError` when the connection closed first).
    `usable` is False once the server sent GOAWAY or the connection closed:
    new requests then go to a new connection.
    """

    def __init__(self, cap: int, budget: BodyBudget | None) -> None:
        config = jh2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            # `h2_headers` builds a valid header block (lower-case names, pseudo-headers
            # first, no connection-specific fields); checking it again costs per request.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            # A shadow's odd response headers are compared, not refused.
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        self._h2 = jh2.connection.H2Connection(config=config)
        self._cap = cap
        self._budget = budget
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.goaway = False
        self._first = b""  # the server's first bytes, until they show a SETTINGS frame
        self._streams: dict[int, _Stream] = {}
        self._active = 0  # streams we opened and did not finish
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._window_waiters: list[asyncio.Future[None]] = []
        self._flush_scheduled = False
        self._paused = False
        self._drained: asyncio.Future[None] | None = None

    @property
    def usable(self) -> bool:
        """True while new streams may be opened here."""
        return not (self.closed or self.goaway)

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        h2c = self._h2
        h2c.local_settings = jh2.settings.Settings(
            client=True,
            initial_values={
                jh2.settings.SettingCodes.ENABLE_PUSH: 0,
                jh2.settings.SettingCodes.INITIAL_WINDOW_SIZE: RECEIVE_WINDOW,
                jh2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            },
        )
        h2c.initiate_connection()
        h2c.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self._flush_now()

    def data_received(self, data: bytes) -> None:
        if not self.ready.done():
            # A server's first frame is SETTINGS (RFC 9113 section 3.4): its type byte is 4.
            first = self._first + data
            if len(first) < 4:
                self._first = first
                return
            if first[3] != 4:
                what = "in HTTP/1.x" if first.startswith(b"HTTP/") else "with no SETTINGS frame"
                self._broken(NotH2(f"the shadow answered the HTTP/2 preface {what}"))
                return
            data, self._first = first, b""
        try:
            events = self._h2.receive_data(data)
        except jh2.exceptions.ProtocolError as exc:
            if not self.ready.done():
                self._broken(NotH2(f"the shadow does not speak HTTP/2: {exc}"))
            else:
                self._broken(ConnectionResetError(f"HTTP/2 protocol error: {exc}"))
            return
        for event in events:
            self._event(event)
        self._flush_now()

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._broken(
            ConnectionResetError("the shadow closed the HTTP/2 connection") if exc is None else exc
        )

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    # -- requests -----------------------------------------------------------------

    async def request(self, headers: Headers, body: bytes, trailers: Headers | None) -> Response:
        """Send one request as a new stream and return the response.

        Raises `Unprocessed` when the server did not process it (nothing was
        written, or the server said so), another `ConnectionError` when the
        connection failed after the request was written.
        """
        await self._slot()
        h2c = self._h2
        stream_id = h2c.get_next_available_stream_id()
        loop = asyncio.get_running_loop()
        stream = _Stream(BodyCollector(self._cap, self._budget), loop.create_future())
        self._streams[stream_id] = stream
        self._active += 1
        try:
            end = not body and not trailers
            h2c.send_headers(stream_id, headers, end_stream=end)
            # Written at the end of the loop's turn, with the other streams' frames: one
            # write for many requests. (Writing each at once looked better only while the
            # bench shadow was slow; against a fast one it cost more, bench/replay.py.)
            self._flush()
            if body:
                await self._send_body(stream_id, stream, body, end_stream=not trailers)
            if trailers and not stream.done.done():
                h2c.send_headers(stream_id, trailers, end_stream=True)
                self._flush()
            return await stream.done
        except BaseException:
            stream.body.release()
            answered = stream.done.done() and not stream.done.cancelled()
            if not answered and not self.closed:
                # Cancelled (the sender's timeout) or failed while sending: drop the stream only.
                try:
                    h2c.reset_stream(stream_id, ErrorCodes.CANCEL)
                    self._flush()
                except jh2.exceptions.H2Error:
                    pass  # already closed on either side
            raise
        finally:
            self._streams.pop(stream_id, None)
            self._active -= 1
            self._wake_slot()
            if self.goaway and not self._active and self.transport is not None:
                self.transport.close()

    async def _slot(self) -> None:
        """Wait until the server's concurrent-stream limit leaves room for one more."""
        while True:
            if not self.usable:
                raise Unprocessed("the HTTP/2 connection is closing")
            if self._active < self._h2.remote_settings.max_concurrent_streams:
                return
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._slot_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._slot_waiters:
                    self._slot_waiters.remove(waiter)

    def _wake_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _send_body(
        self, stream_id: int, stream: _Stream, body: bytes, end_stream: bool
    ) -> None:
        h2c = self._h2
        view = memoryview(body)
        sent = 0
        while sent < len(body):
            if self.closed or stream.done.done():
                break  # the stream ended (reset, or the server answered early)
            room = min(h2c.local_flow_control_window(stream_id), h2c.max_outbound_frame_size)
            if room <= 0:
                await self._window()
                continue
            chunk = view[sent : sent + room]
            sent += len(chunk)
            h2c.send_data(stream_id, chunk.tobytes(), end_stream=end_stream and sent == len(body))
            self._flush()
            if self._paused:
                self._flush_now()
                if self._drained is None:
                    self._drained = asyncio.get_running_loop().create_future()
                await asyncio.shield(self._drained)

    async def _window(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._window_waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._window_waiters:
                self._window_waiters.remove(waiter)

    def _wake_windows(self) -> None:
        waiters, self._window_waiters = self._window_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- events -------------------------------------------------------------------

    def _event(self, event: jh2.events.Event) -> None:
        if isinstance(event, jh2.events.DataReceived):
            stream = self._streams.get(event.stream_id) if event.stream_id else None
            if stream is not None and event.data:
                stream.body.feed(event.data)
            if event.flow_controlled_length:
                # Always acknowledged: the cap, not the window, bounds what is kept.
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, jh2.events.ResponseReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                status, headers = _split(event.headers)
                stream.status, stream.headers = status, headers
        elif isinstance(event, jh2.events.TrailersReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.trailers = tuple((_text(n), _text(v)) for n, v in event.headers)
        elif isinstance(event, jh2.events.StreamEnded):
            self._finish(event.stream_id)
        elif isinstance(event, jh2.events.StreamReset):
            self._reset(event.stream_id, event.error_code)
        elif isinstance(event, jh2.events.WindowUpdated):
            self._wake_windows()
        elif isinstance(event, jh2.events.RemoteSettingsChanged):
            if not self.ready.done():
                self.ready.set_result(None)
            self._wake_windows()
            self._wake_slot()
        elif isinstance(event, jh2.events.ConnectionTerminated):
            self._goaway(event.last_stream_id, event.error_code)

    def _finish(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.done.done():
            return
        collected = stream.body.result()
        response = Response(
            stream.status,
            stream.headers,
            collected.body,
            "",
            collected.truncated,
            collected.length,
            collected.sha256,
            stream.trailers,
            "HTTP/2.0",
        )
        stream.done.set_result(response)

    def _reset(self, stream_id: int, code: int | ErrorCodes) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.done.done():
            return
        if code == ErrorCodes.REFUSED_STREAM:
            stream.done.set_exception(Unprocessed("the shadow refused the stream"))
        else:
            name = code.name if isinstance(code, ErrorCodes) else str(code)
            stream.done.set_exception(ConnectionResetError(f"the shadow reset the stream ({name})"))
        self._wake_windows()

    def _goaway(self, last_stream_id: int | None, code: int | ErrorCodes) -> None:
        self.goaway = True
        last = last_stream_id if last_stream_id is not None else 2**31
        for stream_id, stream in self._streams.items():
            if stream_id > last and not stream.done.done():
                stream.done.set_exception(Unprocessed("the shadow sent GOAWAY before this stream"))
        self._wake_windows()
        for waiter in self._slot_waiters:
            if not waiter.done():
                waiter.set_result(None)  # they see `usable` False and go elsewhere
        if not self._active and self.transport is not None:
            self.transport.close()

    def _broken(self, exc: Exception) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(exc)
            self.ready.exception()  # retrieved: whoever waits on it sees it too
        for stream in self._streams.values():
            if not stream.done.done():
                stream.done.set_exception(
                    exc if isinstance(exc, ConnectionError) else ConnectionResetError(str(exc))
                )
        self._wake_windows()
        for waiter in self._slot_waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if self.transport is not None:
            self.transport.close()

    # -- writing ------------------------------------------------------------------

    def _flush(self) -> None:
        """Write what h2 has to send at the end of this loop iteration (batches streams)."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_scheduled = False
        data = self._h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        """Say GOAWAY and close (streams still in flight fail)."""
        if self.transport is None or self.closed:
            return
        try:
            self._h2.close_connection()
            self._flush_now()
        except jh2.exceptions.H2Error:
            pass
        self.transport.close()


def _split(raw: list[tuple[bytes, bytes]]) -> tuple[int, tuple[tuple[str, str], ...]]:
    """`:status` and the regular headers (h2 puts the pseudo-headers first)."""
    status = 0
    headers = []
    for name, value in raw:
        if name.startswith(b":"):
            if name == b":status":
                status = int(value)
            continue
        headers.append((_text(name), _text(value)))
    return status, tuple(headers)
