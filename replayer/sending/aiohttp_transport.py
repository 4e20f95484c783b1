"""`AiohttpTransport`: a `replayer.sending.sender.Transport` on aiohttp's client.

It sends exactly the prepared request: no User-Agent, Accept or
Accept-Encoding of its own, no Content-Type for bytes, no cookies, no
redirects, no decompression, the path as recorded (never re-quoted). The
worker and `replay range` use `replayer.sending.http1.Http1Transport` instead, which
puts the same bytes on the wire (tests/replayer/test_sender.py checks both) at
a fraction of the cost per request; this one stays for what aiohttp adds.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

import aiohttp
from aiohttp import hdrs
from yarl import URL

from replayer.models import OutgoingRequest, Response


class _AnyMethod(set[str]):
    def __contains__(self, item: object) -> bool:
        return True


#: The exact header list of the request being built in this task (see `_ExactRequest`).
_EXACT_HEADERS: ContextVar[Sequence[tuple[str, str]] | None] = ContextVar(
    "trafficmirror_exact_headers", default=None
)


class _ExactRequest(aiohttp.ClientRequest):
    """An aiohttp request that carries exactly the prepared header list.

    Two aiohttp behaviours break a faithful replay: `ClientSession` merges
    header names case-sensitively, so a recorded `X-Tag: a` followed by
    `x-tag: b` would lose the first; and a bodiless POST/PUT/DELETE gets a
    `Content-Length: 0` the client never sent. So the header list is taken
    from `_EXACT_HEADERS` (set by the transport around the call) and every
    method is treated as one that may go without a body (a recorded
    Content-Length is still sent).
    """

    GET_METHODS = _AnyMethod()

    def update_headers(self, headers: Any) -> None:
        exact = _EXACT_HEADERS.get()
        if exact is None:
            super().update_headers(headers)
            return
        super().update_headers(None)  # the Host header of the URL
        for name, value in exact:
            if name.lower() == "host":
                self.headers[hdrs.HOST] = value
            else:
                self.headers.add(name, value)


#: Headers aiohttp would add on its own; the shadow must see only recorded ones.
_AUTO_HEADERS = (hdrs.USER_AGENT, hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.CONTENT_TYPE)


class AiohttpTransport:
    """The real transport: an aiohttp session with a keep-alive connection pool.

    `limit` caps open connections (the sender's concurrency is the real bound).
    Created lazily inside the running event loop.
    """

    def __init__(self, limit: int = 100) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=0, ttl_dns_cache=300)
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=_AUTO_HEADERS,
            request_class=_ExactRequest,
            timeout=aiohttp.ClientTimeout(total=None),  # the sender enforces the timeout
            trust_env=False,
            # Recorded responses may carry big headers; never fail on them.
            max_line_size=65536,
            max_field_size=65536,
        )

    async def send(self, request: OutgoingRequest) -> Response:
        if self._session is None:
            self._session = self._open()
        token = _EXACT_HEADERS.set(request.headers)
        try:
            async with self._session.request(
                request.method,
                URL(request.url, encoded=True),
                data=request.body or None,
                allow_redirects=False,
                compress=None,
            ) as response:
                body = await response.read()
                return Response(
                    status=response.status,
                    headers=tuple(
                        (k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers
                    ),
                    body=body,
                    reason=response.reason or "",
                )
        finally:
            _EXACT_HEADERS.reset(token)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
