"""The replayer's HTTP/1.1 client: exact requests over a keep-alive connection pool.

`Http1Transport` is the `replayer.sending.sender.Transport` the worker and `replay
range` use. It exists because a general-purpose client does several times
more work per request than a replay needs (bench/replay.py; the figures are in
the docs), and because a replay must send exactly the prepared request, which
such clients fight (they merge headers case-insensitively, add their own,
re-quote paths). It does not follow redirects, keep cookies, use proxies from
the environment, or pipeline requests; a failed request is not retried (a
replay must not send a request twice; one whose connection could not be
opened raises `NotSent`: nothing was written). https uses the default TLS
context (certificates verified) with SNI.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque

from replayer.models import DEFAULT_PORTS, OutgoingRequest, Response, Target
from replayer.sending.bodies import DEFAULT_MAX_RESPONSE_BYTES, BodyBudget
from replayer.sending.h1response import H1Connection
from replayer.sending.sender import NotSent


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (for one-line error outcomes)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def socket_address(target: Target) -> tuple[str, int]:
    """(host, port) to connect to for `target` (IPv6 brackets removed, default ports)."""
    hostport = target.host_port
    if hostport.startswith("["):  # IPv6 literal
        close = hostport.index("]")
        host, rest = hostport[1:close], hostport[close + 1 :]
        port = int(rest[1:]) if rest.startswith(":") else DEFAULT_PORTS[target.scheme]
        return host, port
    host, colon, port_text = hostport.rpartition(":")
    if not colon:
        return hostport, DEFAULT_PORTS[target.scheme]
    return host, int(port_text)


def serialize(request: OutgoingRequest) -> bytes:
    """The request head and body as written to the wire.

    The request line with the raw path, then the prepared headers in their
    order, case and duplicates (Host first only when the request has none),
    then the body whole. A body without a Content-Length gets one appended (a
    recorded chunked upload is sent with a length); a bodiless request gets
    none. Header text is UTF-8; a name or value holding CR or LF is refused
    (header injection), as other clients do.
    """
    headers = request.headers
    lines = [f"{request.method} {request.path} HTTP/1.1"]
    has_host = has_length = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == "host":
            has_host = True
        elif lowered == "content-length":
            has_length = True
        lines.append(f"{name}: {value}")
    if not has_host:
        lines.insert(1, f"Host: {request.target.host_port}")
    body = request.body
    if body and not has_length:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("\r\n")
    head = "\r\n".join(lines)
    # Each line contributes exactly one CR and one LF; any other is injected.
    expected = len(lines) - 1 + 1  # the separators plus the final empty line's pair
    if head.count("\r") != expected or head.count("\n") != expected:
        raise ValueError("a header name or value contains CR or LF; not sending it")
    data = head.encode("utf-8")
    return data + body if body else data


class Http1Transport:
    """HTTP/1.1 over a keep-alive pool of at most `limit` connections.

    Use it from one event loop; connections are opened lazily and reused most
    recently used first, per scheme/host/port. Of each response body at most
    `max_body` bytes are kept (the response says when it was truncated), and
    at most `budget` across the responses being read at once. A connection is closed rather
    than reused when the server asked (`Connection: close`, HTTP/1.0 without
    keep-alive), when the body ran to the end of the connection, when the
    server sent more than the response, and when a request was cancelled (the
    sender's timeout) or failed part way: its state is unknown. A keep-alive
    connection the server closed is seen before reuse if the close arrived;
    otherwise that request fails.
    """

    def __init__(
        self,
        limit: int = 100,
        ssl_context: ssl.SSLContext | None = None,
        *,
        max_body: int = DEFAULT_MAX_RESPONSE_BYTES,
        budget: BodyBudget | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._ssl = ssl_context
        self._max_body = max_body
        #: Shared with the other targets' transports: the bound on bodies held at once.
        self.budget = budget or BodyBudget.for_cap(max_body)
        self._idle: dict[Target, list[H1Connection]] = {}
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._addresses: dict[Target, tuple[str, int]] = {}

    async def send(self, request: OutgoingRequest) -> Response:
        data = serialize(request)
        target = request.target
        try:
            conn = await self._acquire(target)
        except OSError as exc:  # refused, unreachable, name look-up, TLS handshake (SSLError)
            raise NotSent(f"{type(exc).__name__}: {first_line(exc)}") from exc
        except asyncio.CancelledError as exc:  # the timeout (or a close) while connecting
            raise NotSent("cancelled while connecting") from exc
        try:
            response = await conn.roundtrip(data, request.method == "HEAD")
        except BaseException:
            self._discard(conn)
            raise
        if conn.reusable and not conn.closed:
            self._idle.setdefault(target, []).append(conn)
            self._wake()
        else:
            self._discard(conn)
        return response

    async def _acquire(self, target: Target) -> H1Connection:
        while True:
            idle = self._idle.get(target)
            while idle:
                conn = idle.pop()
                if conn.reusable and not conn.closed:
                    return conn
                self._discard(conn)
            if self._open >= self._limit:
                # Make room by closing an idle connection to another origin, or wait.
                other = next((c for conns in self._idle.values() for c in conns), None)
                if other is None:
                    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    self._waiters.append(waiter)
                    try:
                        await waiter
                    finally:
                        if waiter in self._waiters:
                            self._waiters.remove(waiter)
                    continue
                for conns in self._idle.values():
                    if other in conns:
                        conns.remove(other)
                self._discard(other)
            return await self._connect(target)

    async def _connect(self, target: Target) -> H1Connection:
        address = self._addresses.get(target)
        if address is None:
            address = self._addresses[target] = socket_address(target)
        host, port = address
        context: ssl.SSLContext | None = None
        if target.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        self._open += 1
        try:
            _, conn = await asyncio.get_running_loop().create_connection(
                self._protocol, host, port, ssl=context, server_hostname=host if context else None
            )
        except BaseException:
            self._open -= 1
            self._wake()
            raise
        return conn

    def _protocol(self) -> H1Connection:
        return H1Connection(self._max_body, self.budget)

    def _discard(self, conn: H1Connection) -> None:
        conn.close()
        self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                self._discard(conn)
        self._idle.clear()
