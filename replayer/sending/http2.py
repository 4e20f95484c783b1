"""The replayer's HTTP/2 client: every request to a target as a stream of one connection.

`Http2Transport` is a `replayer.sending.sender.Transport` like
`replayer.sending.http1.Http1Transport`, over `jh2`, h2's fork with a compiled
HPACK coder (`replayer.sending.h2conn`; bench/h2_clients.py measured it against
the same client on h2 and against httpx's HTTP/2, docs/http2.md has why).
https negotiates h2 by ALPN (certificates verified as for HTTP/1.1); http
speaks h2c with prior knowledge. A shadow that does not offer h2 raises
`H2NotOffered` (a `NotSent`: no request was written), which
`replayer.sending.dispatch` turns into a fall-back to HTTP/1.1. Headers are
translated for HTTP/2 (`h2_headers`). A request the server did not process
(GOAWAY, REFUSED_STREAM) goes again on a new connection; one written and then
lost is an error (a replay never sends a request twice).
"""

from __future__ import annotations

import asyncio
import ssl
from functools import lru_cache

from jh2.hpack.struct import NeverIndexedHeaderTuple

from replayer.models import OutgoingRequest, Response, Target
from replayer.sending.bodies import DEFAULT_MAX_RESPONSE_BYTES, BodyBudget
from replayer.sending.h2conn import H2Connection, Headers, NotH2, Unprocessed
from replayer.sending.http1 import first_line, socket_address
from replayer.sending.sender import NotSent
from trafficmirror.plumbing.grpcmedia import is_grpc_media

#: Connection-specific header fields HTTP/2 forbids (RFC 9113 section 8.2.2); Host
#: becomes `:authority`. TE is allowed with the value "trailers" only.
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"}
)
#: Times a request the server did not process is sent again (on a new connection).
UNPROCESSED_RETRIES = 2
#: Header fields remembered as seen (see `Http2Transport._index_repeats`); forgotten when full.
SEEN_FIELDS = 4096


class H2NotOffered(NotSent):
    """The shadow does not speak HTTP/2 (no h2 in ALPN; the h2c preface answered otherwise)."""


_REGULAR, _DROP, _HOST, _TE, _CONTENT_TYPE = range(5)


@lru_cache(maxsize=4096)
def _field_name(name: str) -> tuple[bytes, int]:
    """The HTTP/2 name of a header and what it is; cached: traffic has few distinct names."""
    lowered = name.lower().encode("utf-8")
    if lowered == b"host":
        return lowered, _HOST
    if lowered in _CONNECTION_SPECIFIC:
        return lowered, _DROP
    if lowered == b"te":
        return lowered, _TE
    if lowered == b"content-type":
        return lowered, _CONTENT_TYPE
    return lowered, _REGULAR


def h2_headers(request: OutgoingRequest) -> Headers:
    """The request's header block for HTTP/2: pseudo-headers first, names lower-cased.

    `:authority` is the Host header's value (the target's, unless a transform
    set another), `:path` the raw path, `:scheme` the target's. Connection-
    specific fields are dropped (Connection, Keep-Alive, Proxy-Connection,
    Transfer-Encoding, Upgrade, Host; TE unless it says `trailers`). A gRPC
    request (`is_grpc_media`: not gRPC-Web) gets `te: trailers`, which gRPC
    servers require and the request builder drops as hop-by-hop in HTTP/1.1.
    """
    authority = None
    regular: Headers = []
    grpc = has_te = False
    for name, value in request.headers:
        lowered, kind = _field_name(name)
        encoded = value.encode("utf-8")
        if kind:
            if kind == _DROP:
                continue
            if kind == _HOST:
                if authority is None:
                    authority = encoded
                continue
            if kind == _TE:
                if encoded.strip().lower() != b"trailers":
                    continue
                has_te = True
            elif is_grpc_media(encoded):
                grpc = True
        regular.append((lowered, encoded))
    if grpc and not has_te:
        regular.append((b"te", b"trailers"))
    head: Headers = [
        (b":method", request.method.encode("utf-8")),
        (b":scheme", request.target.scheme.encode("ascii")),
        (b":authority", authority or request.target.host_port.encode("utf-8")),
        (b":path", request.path.encode("utf-8")),
    ]
    return head + regular


def _trailers(request: OutgoingRequest) -> Headers | None:
    if not request.trailers:
        return None
    return [
        (name.lower().encode("utf-8"), value.encode("utf-8")) for name, value in request.trailers
    ]


class Http2Transport:
    """HTTP/2: one connection per target, its streams shared by every request to it.

    Use it from one event loop. A connection is opened when the first request
    to a target needs it (the others wait for the same connect) and replaced
    when the server sent GOAWAY or it closed. Concurrency on it is bounded by
    the server's SETTINGS_MAX_CONCURRENT_STREAMS (requests beyond it wait) and
    by the sender's cap. https uses `ssl_context` (default: the system's
    authorities, certificates verified, like HTTP/1.1) with ALPN set to h2, or
    to h2 and http/1.1 with `fallback` (so a shadow without h2 still completes
    the handshake and `H2NotOffered` can say so). Response bodies are kept up
    to `max_body` bytes within `budget`, as in HTTP/1.1.
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None = None,
        *,
        max_body: int = DEFAULT_MAX_RESPONSE_BYTES,
        budget: BodyBudget | None = None,
        fallback: bool = False,
    ) -> None:
        self._ssl = ssl_context
        self._fallback = fallback
        self._max_body = max_body
        self.budget = budget or BodyBudget.for_cap(max_body)
        self._conns: dict[Target, H2Connection] = {}
        self._connecting: dict[Target, asyncio.Task[H2Connection]] = {}
        self._seen: set[tuple[bytes, bytes]] = set()

    async def send(self, request: OutgoingRequest) -> Response:
        headers = self._index_repeats(h2_headers(request))
        trailers = _trailers(request)
        for _ in range(UNPROCESSED_RETRIES + 1):
            conn = await self._connection(request.target)
            try:
                return await conn.request(headers, request.body, trailers)
            except Unprocessed as exc:
                last = exc
                continue
        raise NotSent(f"not processed by the shadow: {last}")

    def _index_repeats(self, headers: Headers) -> Headers:
        """Let HPACK index only the fields seen before; the others go out never-indexed.

        A field that changes with every request (the replay header, a request
        id, most paths) would otherwise enter the connection's header table and
        push out the ones that repeat, and the encoder searches that table for
        every field it sends (bench/h2_clients.py measured the difference).
        """
        seen = self._seen
        if len(seen) > SEEN_FIELDS:
            seen.clear()
        out: Headers = []
        for field in headers:
            if field in seen:
                out.append(field)
            else:
                seen.add(field)
                out.append(NeverIndexedHeaderTuple(*field))
        return out

    async def _connection(self, target: Target) -> H2Connection:
        conn = self._conns.get(target)
        if conn is not None and conn.usable:
            return conn
        task = self._connecting.get(target)
        if task is None:
            task = asyncio.ensure_future(self._connect(target))
            self._connecting[target] = task
            task.add_done_callback(lambda _: self._connecting.pop(target, None))
        try:
            # Shielded: one waiter's timeout must not cancel the connect the others share.
            conn = await asyncio.shield(task)
        except NotSent:
            raise
        except NotH2 as exc:
            raise H2NotOffered(str(exc)) from exc
        except (OSError, ConnectionError) as exc:  # refused, unreachable, TLS (SSLError)
            raise NotSent(f"{type(exc).__name__}: {first_line(exc)}") from exc
        except asyncio.CancelledError as exc:
            raise NotSent("cancelled while connecting") from exc
        self._conns[target] = conn
        return conn

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        self._ssl.set_alpn_protocols(["h2", "http/1.1"] if self._fallback else ["h2"])
        return self._ssl

    async def _connect(self, target: Target) -> H2Connection:
        host, port = socket_address(target)
        context = self._context() if target.scheme == "https" else None
        loop = asyncio.get_running_loop()
        transport, conn = await loop.create_connection(
            self._protocol, host, port, ssl=context, server_hostname=host if context else None
        )
        if context is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            chosen = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
            if chosen != "h2":
                transport.close()
                raise H2NotOffered(
                    f"the shadow did not select h2 by ALPN (it chose {chosen or 'nothing'})"
                )
        try:
            await conn.ready
        except BaseException:
            transport.close()
            raise
        return conn

    def _protocol(self) -> H2Connection:
        return H2Connection(self._max_body, self.budget)

    async def aclose(self) -> None:
        for task in list(self._connecting.values()):
            task.cancel()
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
