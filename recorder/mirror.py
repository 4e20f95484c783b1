"""`record --mirror`: the target of a mirror rule, answering every request itself.

nginx `mirror`, Envoy/Istio `requestMirrorPolicies` and Gateway API
`RequestMirror` send a copy of each request and throw the answer away. With
`trafficmirror_mirror` the `Mirror` addon answers that copy at once (`200`,
empty body, keep-alive) and no upstream is ever contacted; the `Recorder`
writes the request as an event with no response (`capture = "mirror"`). A
request whose body fits `trafficmirror_max_body_bytes` is answered in the
`requestheaders` hook (mitmproxy then reads that body, at most the cap); a
larger body, or one of unknown length, streams to an in-process server that
drops it (`recorder.discard`) while the Recorder keeps its first bytes
(`recorder.capture`), so memory stays bounded. Envoy's `-shadow` Host suffix
is removed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.net.http.http1 import expected_http_body_size
from mitmproxy.proxy import mode_specs, server_hooks
from prometheus_client import Counter

from recorder.capture import CaptureBudget
from recorder.config import MIRROR_PLACEHOLDER
from recorder.discard import ANSWER_STATUS, DiscardServer
from recorder.options import options_error

logger = logging.getLogger(__name__)

#: `flow.metadata` key: body bytes this flow holds against the budget.
_HELD = "trafficmirror.mirror_held"
# Envoy (and so Istio) appends -shadow to the mirrored host, before any port.
_SHADOW = re.compile(r"^(?P<host>.+)-shadow(?P<port>:\d+)?$")

STREAMED = Counter(
    "trafficmirror_recorder_mirror_streamed",
    "Mirrored requests whose body was larger than the cap or of unknown length, "
    "streamed to the recorder's discard server before they were answered.",
)


class Mirror:
    """Answers every request itself when `trafficmirror_mirror` is on (see the module docstring).

    Off, it does nothing. It needs a `reverse:http://...` mode (any host: it
    is never contacted) and `keep_host_header`, so the event keeps the
    client's Host; both are checked when the option is set. A body held
    whole until the answer takes its bytes from `budget`, the `Recorder`'s
    (`trafficmirror_max_buffered_bytes`), so held and captured bodies of all
    requests in flight share one bound; when it is used up, requests stream.
    """

    def __init__(self, budget: CaptureBudget | None = None) -> None:
        self.enabled = False
        self.max_body_bytes = 1024 * 1024
        self.budget = budget if budget is not None else CaptureBudget()
        self._discard: DiscardServer | None = None
        self._running = False

    # -- options --------------------------------------------------------------

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if "trafficmirror_max_body_bytes" in updated:
            self.max_body_bytes = max(opts.trafficmirror_max_body_bytes, 0)
        if not updated & {"trafficmirror_mirror", "mode", "keep_host_header"}:
            return
        self.enabled = bool(opts.trafficmirror_mirror)
        if not self.enabled:
            return
        check_modes(list(opts.mode))
        if not opts.keep_host_header:
            raise options_error(
                "trafficmirror_mirror needs keep_host_header=true: without it mitmproxy "
                "replaces the client's Host with the placeholder upstream's"
            )
        if self._discard is None:
            self._discard = DiscardServer()
            if self._running:  # switched on while the proxy runs
                asyncio.get_running_loop().create_task(self._discard.start())

    # -- lifecycle ------------------------------------------------------------

    async def running(self) -> None:
        self._running = True
        if self._discard is not None:
            await self._discard.start()
            logger.info(
                "trafficmirror: mirror mode: answering every request itself, "
                "no upstream is contacted"
            )

    def done(self) -> None:
        if self._discard is not None:
            self._discard.close()
            self._discard = None

    # -- hooks ----------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        discard = self._discard
        if not self.enabled or discard is None or flow.is_replay:
            return
        request = flow.request
        strip_shadow(request)
        size = body_size(request)
        if size is not None and size <= self.max_body_bytes and size <= self.budget.free:
            if size:
                self.budget.free -= size
                flow.metadata[_HELD] = size
            # A stream another addon set would make mitmproxy refuse the answer.
            request.stream = False
            flow.response = answer()
            return
        # Too large or of unknown length: mitmproxy streams it to the discard
        # server (the Recorder's BodyCapture keeps the first bytes).
        if not request.stream:
            request.stream = True
        # Through .data: the properties would rewrite the Host header too.
        request.data.host, request.data.port = discard.address
        STREAMED.inc()

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        # The only server a mirror ever talks to is its own discard server
        # (an eager connection_strategy opens one to the placeholder first).
        if not self.enabled:
            return
        if self._discard is not None:
            data.server.address = self._discard.address
        else:  # shutting down: refuse rather than reach the placeholder
            data.server.error = "record --mirror contacts no upstream"

    def response(self, flow: http.HTTPFlow) -> None:
        self._release(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._release(flow)

    def _release(self, flow: http.HTTPFlow) -> None:
        size = flow.metadata.pop(_HELD, 0)
        if size:
            self.budget.free += size


def answer() -> http.Response:
    """The mirror's answer: `200`, empty body, Content-Length 0 (the connection stays open)."""
    return http.Response.make(ANSWER_STATUS)


def check_modes(modes: list[str]) -> None:
    """`OptionsError` unless every proxy mode is `reverse:http://...`."""
    for spec in modes:
        try:
            mode: Any = mode_specs.ProxyMode.parse(spec)
        except ValueError:
            continue  # mitmproxy reports a bad spec itself
        if not isinstance(mode, mode_specs.ReverseMode) or mode.scheme != "http":
            raise options_error(
                f"trafficmirror_mirror needs --mode reverse:{MIRROR_PLACEHOLDER} "
                f"(the upstream is never contacted), not {spec}"
            )


def body_size(request: http.Request) -> int | None:
    """The request body's length if it is known from the headers (0: no body), else None.

    HTTP/1 says it with Content-Length or chunked framing (or neither: no
    body); an HTTP/2 or HTTP/3 request without Content-Length may or may not
    have a body, which its headers do not tell.
    """
    if request.is_http2 or request.is_http3:
        value = request.headers.get("content-length")
        return int(value) if value is not None and value.isdigit() else None
    try:
        size = expected_http_body_size(request)
    except ValueError:
        return None
    return size if size is not None and size >= 0 else None


def strip_shadow(request: http.Request) -> bool:
    """Remove Envoy's `-shadow` suffix from the Host header and `:authority`; True if it did."""
    changed = False
    host = request.headers.get("host")
    if host is not None:
        original = _unshadow(host)
        if original is not None:
            request.headers["host"] = original
            changed = True
    if request.data.authority:
        original = _unshadow(request.data.authority.decode("ascii", "surrogateescape"))
        if original is not None:
            request.data.authority = original.encode("ascii", "surrogateescape")
            changed = True
    return changed


def _unshadow(authority: str) -> str | None:
    match = _SHADOW.match(authority)
    if match is None:
        return None
    return match["host"] + (match["port"] or "")
