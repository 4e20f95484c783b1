"""Framing of HTTP/2 and HTTP/3 request bodies that go on to an HTTP/1.1 upstream.

mitmproxy (11 and 12) forwards such a request that has a body but no
Content-Length to an HTTP/1.1 upstream with no framing at all: the app reads
a request without a body, then the body as the start of the next request.
The recorder streams bodies, so the body is not complete when the request's
headers go out and its length cannot be added then. `Http1BodyFraming` fixes
it where mitmproxy writes the request to the upstream (`Http1Client.send`):
when the request headers leave with a body to follow and neither
Content-Length nor Transfer-Encoding, that hop gets `Transfer-Encoding:
chunked` and the body is sent chunked (mitmproxy's own code for chunked
requests does the encoding). The flow, and so the event, keeps the headers
the client sent. An HTTP/2 upstream is not touched (it frames bodies itself).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from mitmproxy import http
from mitmproxy.proxy.layers.http import _http1
from mitmproxy.proxy.layers.http._events import RequestHeaders

logger = logging.getLogger(__name__)

_PATCHED = "_trafficmirror_framing"


def needs_chunking(request: http.Request) -> bool:
    """True for an HTTP/2 or HTTP/3 request whose body has no framing for HTTP/1.1."""
    headers = request.headers
    return (
        (request.is_http2 or request.is_http3)
        and "content-length" not in headers
        and "transfer-encoding" not in headers
    )


def _framed(send: Callable[..., Any]) -> Callable[..., Any]:
    def send_framed(self: Any, event: Any) -> Any:
        if (
            isinstance(event, RequestHeaders)
            and not event.end_stream
            and needs_chunking(event.request)
        ):
            # A copy for this hop only, as mitmproxy's own HTTP/2 to HTTP/1
            # conversion does; the connection reads Transfer-Encoding from it.
            request = event.request.copy()
            request.headers["transfer-encoding"] = "chunked"
            event = dataclasses.replace(event, request=request)
        return send(self, event)

    setattr(send_framed, _PATCHED, True)
    return send_framed


def install() -> bool:
    """Patch mitmproxy's HTTP/1 client in this process (once); False if already done."""
    client: Any = _http1.Http1Client
    if getattr(client.send, _PATCHED, False):
        return False
    client.send = _framed(client.send)
    logger.debug("trafficmirror: HTTP/2 request bodies to HTTP/1.1 upstreams are sent chunked")
    return True


class Http1BodyFraming:
    """The addon that applies `install()` when mitmproxy loads it (see the module docstring)."""

    def load(self, loader: Any) -> None:
        install()
