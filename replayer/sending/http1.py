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
from replayer.sending.bodies import DEFAULT_MAX_RESPONSE_BYTES, BodyBudget, BodyCollector
from replayer.sending.sender import NotSent

#: Status line and headers longer than this are refused (aiohttp allows 64 KiB a line).
MAX_HEAD_BYTES = 256 * 1024


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


class ServerDisconnected(ConnectionError):
    """The server closed the connection before the response was complete."""


class BadResponse(ValueError):
    """The server's answer is not valid HTTP/1.x."""


def _address(target: Target) -> tuple[str, int]:
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


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request on it at a time.

    Reads the status line and headers as received, then the body framed by
    Content-Length, chunked transfer coding (trailers discarded) or, failing
    both, the end of the connection; no body for HEAD, 1xx, 204 and 304.
    Interim 1xx responses (100 Continue) are skipped; nothing is decompressed.
    Body bytes go to a `BodyCollector` as they arrive: at most `cap` of them
    are kept (within the shared `budget`), the rest counted and hashed.
    """

    def __init__(self, cap: int = DEFAULT_MAX_RESPONSE_BYTES, budget: BodyBudget | None = None):
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = True
        self._cap = cap
        self._budget = budget
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._head_request = False
        # Response being parsed.
        self._status = 0
        self._reason = ""
        self._headers: tuple[tuple[str, str], ...] = ()
        self._framing = ""  # "length", "chunked", "close"
        self._remaining = 0  # body bytes left ("length"), or of the chunk; -1: a size line next
        self._body: BodyCollector | None = None
        self._in_trailers = False

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is None:
            self.reusable = False  # the server spoke out of turn
            return
        try:
            self._parse()
        except Exception as exc:
            self.reusable = False
            self._fail(exc)

    def eof_received(self) -> bool | None:
        self.reusable = False
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._status and self._framing == "close":
            self._complete()
            return
        reason = "server closed the connection before the response was complete"
        error = ServerDisconnected(f"{reason}: {exc}" if exc else reason)
        self._fail(error)

    # -- one exchange ---------------------------------------------------------------

    async def roundtrip(self, data: bytes, head_request: bool) -> Response:
        if self.transport is None:
            raise ServerDisconnected("not connected")
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._head_request = head_request
        self._status = 0
        self._buffer.clear()
        self.transport.write(data)
        try:
            return await waiter
        finally:
            self._waiter = None
            if self._body is not None:  # failed or cancelled part way
                self._body.release()
                self._body = None

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    def _complete(self) -> None:
        waiter = self._waiter
        collector, self._body = self._body, None
        if self._buffer:
            self.reusable = False  # more than one response's worth: unknown state
        if waiter is None or waiter.done():
            if collector is not None:
                collector.release()
            return
        if collector is None:
            waiter.set_result(Response(self._status, self._headers, b"", self._reason))
            return
        got = collector.result()
        response = Response(self._status, self._headers, got.body, self._reason)
        if got.truncated:
            response.body_truncated = True
            response.body_length = got.length
            response.body_sha256 = got.sha256
        waiter.set_result(response)

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    # -- parsing ------------------------------------------------------------------

    def _parse(self) -> None:
        buf = self._buffer
        while True:
            if not self._status:
                end = buf.find(b"\r\n\r\n")
                if end == -1:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise BadResponse("response head too long")
                    return
                head = bytes(buf[:end])
                del buf[: end + 4]
                if not self._start(head):
                    continue  # an interim 1xx response: the real one follows
            framing = self._framing
            body = self._body
            if framing == "length":
                if body is None:  # no body at all
                    self._complete()
                    return
                n = min(len(buf), self._remaining)
                if n:
                    body.feed(bytes(buf[:n]) if n < len(buf) else bytes(buf))
                    del buf[:n]
                    self._remaining -= n
                if self._remaining == 0:
                    self._complete()
                return
            if framing == "chunked":
                if self._chunks(body):  # type: ignore[arg-type]
                    self._complete()
                return
            # "close": everything until the server closes the connection.
            if buf and body is not None:
                body.feed(bytes(buf))
                buf.clear()
            return

    def _start(self, head: bytes) -> bool:
        """Read the status line and headers; False for an interim (1xx) response."""
        lines = head.split(b"\r\n")
        status_line = lines[0]
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise BadResponse(f"bad status line {status_line[:80]!r}")
        status = int(parts[1])
        if 100 <= status < 200 and status != 101:
            return False
        version_10 = parts[0] == b"HTTP/1.0"
        headers: list[tuple[str, str]] = []
        length: int | None = None
        chunked = False
        connection = b""
        for line in lines[1:]:
            if line[:1] in (b" ", b"\t") and headers:  # obsolete line folding
                folded_name, folded = headers[-1]
                headers[-1] = (folded_name, folded + " " + line.strip().decode("latin-1"))
                continue
            raw_name, colon, raw_value = line.partition(b":")
            if not colon:
                raise BadResponse(f"bad header line {line[:80]!r}")
            value = raw_value.strip(b" \t")
            lowered = raw_name.lower()
            if lowered == b"content-length":
                if not value.isdigit() or (length is not None and length != int(value)):
                    raise BadResponse(f"bad Content-Length {value[:40]!r}")
                length = int(value)
            elif lowered == b"transfer-encoding":
                chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            elif lowered == b"connection":
                connection = value.lower()
            headers.append((raw_name.decode("latin-1"), value.decode("latin-1")))
        self._status = status
        self._reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
        self._headers = tuple(headers)
        if connection or version_10:
            tokens = {t.strip() for t in connection.split(b",")}
            if b"close" in tokens or (version_10 and b"keep-alive" not in tokens):
                self.reusable = False
        self._body = None
        if self._head_request or status in (204, 304) or (length == 0 and not chunked):
            self._framing, self._remaining = "length", 0
            return True
        self._body = BodyCollector(self._cap, self._budget)
        if chunked:
            self._framing, self._remaining, self._in_trailers = "chunked", -1, False
        elif length is not None:
            self._framing, self._remaining = "length", length
        else:
            self._framing = "close"
            self.reusable = False
        return True

    def _chunks(self, body: BodyCollector) -> bool:
        """Consume chunked body bytes; True when the last chunk and trailers are read.

        `_remaining`: -1 before a size line, else the bytes of the chunk still to
        come; -2 when they have come and its CRLF is next.
        """
        buf = self._buffer
        while True:
            if self._in_trailers:
                end = buf.find(b"\r\n")
                if end == -1:
                    return False
                del buf[: end + 2]
                if end == 0:
                    return True
                continue
            if self._remaining == -1:  # expecting a size line
                end = buf.find(b"\r\n")
                if end == -1:
                    if len(buf) > 4096:
                        raise BadResponse("chunk size line too long")
                    return False
                size_text = bytes(buf[:end]).split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise BadResponse(f"bad chunk size {size_text[:20]!r}") from None
                del buf[: end + 2]
                if size == 0:
                    self._in_trailers = True
                    continue
                self._remaining = size
            if self._remaining > 0:
                n = min(len(buf), self._remaining)
                if n == 0:
                    return False
                body.feed(bytes(buf[:n]))
                del buf[:n]
                self._remaining -= n
                if self._remaining:
                    return False
                self._remaining = -2
            if len(buf) < 2:
                return False
            if buf[:2] != b"\r\n":
                raise BadResponse("chunk not followed by CRLF")
            del buf[:2]
            self._remaining = -1


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
        self._idle: dict[Target, list[_Connection]] = {}
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._addresses: dict[Target, tuple[str, int]] = {}

    async def send(self, request: OutgoingRequest) -> Response:
        data = serialize(request)
        target = request.target
        try:
            conn = await self._acquire(target)
        except OSError as exc:  # refused, unreachable, name look-up, TLS handshake (SSLError)
            raise NotSent(f"{type(exc).__name__}: {_first_line(exc)}") from exc
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

    async def _acquire(self, target: Target) -> _Connection:
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

    async def _connect(self, target: Target) -> _Connection:
        address = self._addresses.get(target)
        if address is None:
            address = self._addresses[target] = _address(target)
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

    def _protocol(self) -> _Connection:
        return _Connection(self._max_body, self.budget)

    def _discard(self, conn: _Connection) -> None:
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
