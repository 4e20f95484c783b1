"""One HTTP/1.1 keep-alive connection of the replayer's client, reading responses as they come.

`H1Connection` is the asyncio protocol `replayer.sending.http1.Http1Transport`
pools: it writes a prepared request and parses the answer incrementally (status
line, headers, then the body framed by Content-Length, chunked coding or the
end of the connection), handing body bytes to a `BodyCollector` as they arrive
so a large answer is never held whole (`replayer.sending.bodies`). Split from
the transport so the pool and the wire format can each be read in one sitting.
"""

from __future__ import annotations

import asyncio

from replayer.models import Response
from replayer.sending.bodies import DEFAULT_MAX_RESPONSE_BYTES, BodyBudget, BodyCollector

#: Status line and headers longer than this are refused (aiohttp allows 64 KiB a line).
MAX_HEAD_BYTES = 256 * 1024


class ServerDisconnected(ConnectionError):
    """The server closed the connection before the response was complete."""


class BadResponse(ValueError):
    """The server's answer is not valid HTTP/1.x."""


class H1Connection(asyncio.Protocol):
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
