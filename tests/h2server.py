"""A small HTTP/2-only server for the tests, on the `h2` library: h2c or TLS with ALPN h2.

It refuses HTTP/1.1 (answers `HTTP/1.1 505` and closes), so a test that
gets an answer knows it came over HTTP/2. Each request is noted (`Seen`:
method, path, authority, headers, body, trailers) and answered by a handler
(default: 200 with a JSON body naming the path). Knobs for the transport's
edge cases: the concurrent-stream limit it announces, its receive window
(small: the client must wait for WINDOW_UPDATE), GOAWAY after N streams.
Runs in-process (`H2Server`, in a thread with its own loop, or awaited in
the test's loop) or as a process: `python tests/h2server.py PORT [CERT KEY]`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    authority: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    stream_id: int = 0


@dataclass
class Answer:
    """What the handler answers: status, headers, body, trailers."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)


def default_handler(seen: Seen) -> Answer:
    body = json.dumps({"path": seen.path, "method": seen.method}).encode()
    return Answer(200, [("content-type", "application/json")], body)


Handler = Callable[[Seen], Answer]


class _Protocol(asyncio.Protocol):
    def __init__(self, server: H2Server) -> None:
        self.server = server
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Seen] = {}
        self.pending: dict[int, tuple[memoryview, list[tuple[str, str]]]] = {}
        self.first = True
        self.count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections += 1
        self.server.open.add(self)
        settings = {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.server.max_streams}
        if self.server.window is not None:
            settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = self.server.window
        self.conn.local_settings = h2.settings.Settings(client=False, initial_values=settings)
        self.conn.initiate_connection()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.open.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.first:
            self.first = False
            if not data.startswith(b"PRI * HTTP/2.0"):
                self.server.refused += 1
                assert self.transport is not None
                self.transport.write(
                    b"HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
                self.transport.close()
                return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            self.event(event)
        self.flush()

    def event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            pseudo = dict(h for h in event.headers if h[0].startswith(":"))
            self.streams[event.stream_id] = Seen(
                pseudo.get(":method", ""),
                pseudo.get(":path", ""),
                pseudo.get(":authority", ""),
                [h for h in event.headers if not h[0].startswith(":")],
                stream_id=event.stream_id,
            )
            self.server.max_open = max(self.server.max_open, len(self.streams))
        elif isinstance(event, h2.events.DataReceived):
            self.streams[event.stream_id].body += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            self.streams[event.stream_id].trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            seen = self.streams[event.stream_id]
            self.server.seen.append(seen)
            self.count += 1
            delay = self.server.delay
            if delay:
                asyncio.get_running_loop().call_later(delay, self.answer, seen)
            else:
                self.answer(seen)
        elif isinstance(event, h2.events.StreamReset):
            self.streams.pop(event.stream_id, None)
            self.pending.pop(event.stream_id, None)
            self.server.resets += 1
        elif isinstance(event, h2.events.WindowUpdated):
            for stream_id in list(self.pending):
                self.send_more(stream_id)

    def answer(self, seen: Seen) -> None:
        if seen.stream_id not in self.streams:
            return
        answer = self.server.handler(seen)
        headers = [(":status", str(answer.status)), *answer.headers]
        end = not answer.body and not answer.trailers
        self.conn.send_headers(seen.stream_id, headers, end_stream=end)
        if not end:
            self.pending[seen.stream_id] = (memoryview(answer.body), answer.trailers)
            self.send_more(seen.stream_id)
        else:
            self.streams.pop(seen.stream_id, None)
        goaway = self.server.goaway_after
        if goaway is not None and self.count >= goaway:
            self.conn.close_connection(last_stream_id=max(self.streams, default=seen.stream_id))
        self.flush()

    def send_more(self, stream_id: int) -> None:
        body, trailers = self.pending[stream_id]
        while body:
            room = min(self.conn.local_flow_control_window(stream_id), 16384)
            if room <= 0:
                self.pending[stream_id] = (body, trailers)
                self.flush()
                return
            chunk, body = body[:room], body[room:]
            self.conn.send_data(stream_id, chunk.tobytes(), end_stream=not body and not trailers)
        if trailers:
            self.conn.send_headers(stream_id, trailers, end_stream=True)
        del self.pending[stream_id]
        self.streams.pop(stream_id, None)
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class H2Server:
    """An HTTP/2-only server on 127.0.0.1 (see the module doc)."""

    def __init__(
        self,
        handler: Handler = default_handler,
        *,
        tls: ssl.SSLContext | None = None,
        max_streams: int = 100,
        window: int | None = None,
        goaway_after: int | None = None,
        delay: float = 0.0,
    ) -> None:
        self.handler = handler
        self.tls = tls
        self.max_streams = max_streams
        self.window = window
        self.goaway_after = goaway_after
        self.delay = delay
        self.seen: list[Seen] = []
        self.connections = 0
        self.refused = 0
        self.resets = 0
        self.max_open = 0
        self.port = 0
        self.open: set[_Protocol] = set()
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, port: int = 0) -> asyncio.Server:
        """Listen in the running loop; the port is in `port`."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Protocol(self), "127.0.0.1", port, ssl=self.tls
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self._server

    async def close(self) -> None:
        """Stop listening and close the connections still open."""
        if self._server is not None:
            self._server.close()
        for proto in list(self.open):
            if proto.transport is not None:
                proto.transport.close()
        await asyncio.sleep(0)  # let the transports finish closing
        if self._server is not None:
            await self._server.wait_closed()

    def start_thread(self) -> H2Server:
        """Serve from a thread with its own event loop (for tests whose client is a process)."""
        started = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            loop.run_until_complete(self.start())
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.close())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


def tls_server_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context offering only h2 by ALPN."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    return context


def main(argv: list[str]) -> None:
    """`python tests/h2server.py PORT [CERT KEY]`: serve until SIGTERM; print each request."""
    port = int(argv[0])
    tls = tls_server_context(argv[1], argv[2]) if len(argv) >= 3 else None

    def handler(seen: Seen) -> Answer:
        print(json.dumps({"path": seen.path, "method": seen.method}), flush=True)
        return default_handler(seen)

    async def serve() -> None:
        server = H2Server(handler, tls=tls)
        await server.start(port)
        stopped = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
        await stopped.wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main(sys.argv[1:])
