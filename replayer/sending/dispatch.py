"""Pick HTTP/1.1 or HTTP/2 for each request: `--http-version auto|1.1|2`.

`VersionedTransport` is the `Transport` the worker and `replay range` use. It
holds an `Http1Transport` and an `Http2Transport` and sends each request
through one of them. `auto` (the default) replays an exchange recorded as
HTTP/2 as HTTP/2 (ALPN over https, h2c prior knowledge over http) and every
other as HTTP/1.1; when a target turns out not to speak HTTP/2 (no h2 in ALPN,
or it answers the h2c preface with something else than HTTP/2's SETTINGS:
found before any request is written), that target gets HTTP/1.1 from then
on, with one warning. `1.1` sends everything as HTTP/1.1, `2` everything as
HTTP/2 (a target without h2 is an error then: the request is not sent).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

from replayer.models import OutgoingRequest, Response, Target
from replayer.sending.bodies import BodyBudget
from replayer.sending.http1 import Http1Transport
from replayer.sending.http2 import H2NotOffered, Http2Transport

logger = logging.getLogger(__name__)

#: The values of `--http-version`.
HTTP_VERSIONS = ("auto", "1.1", "2")


class VersionedTransport:
    """HTTP/1.1 or HTTP/2 per request, by `mode` (see the module doc).

    `limit` bounds the HTTP/1.1 pool's connections (HTTP/2 has one per target);
    response bodies are capped at `max_body` within `budget`, both protocols
    sharing it. `tls` makes a TLS client context; each protocol gets its own.
    Without it, each makes the default one (the system's authorities,
    certificates verified) when it first connects to an https target.
    """

    def __init__(
        self,
        mode: str = "auto",
        *,
        limit: int = 100,
        max_body: int,
        budget: BodyBudget,
        tls: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        if mode not in HTTP_VERSIONS:
            raise ValueError(f"http version {mode!r} is not one of {', '.join(HTTP_VERSIONS)}")
        self.mode = mode
        self.http1 = Http1Transport(limit, tls() if tls else None, max_body=max_body, budget=budget)
        # A context of its own: ALPN is set on it, which HTTP/1.1 connections must not offer.
        self.http2 = Http2Transport(
            tls() if tls else None,
            max_body=max_body,
            budget=budget,
            fallback=mode == "auto",
        )
        #: Targets found not to speak HTTP/2: HTTP/1.1 for them from then on (auto).
        self.http1_only: set[Target] = set()

    async def send(self, request: OutgoingRequest) -> Response:
        mode = self.mode
        if mode == "1.1" or (
            mode == "auto"
            and (not request.http_version.startswith("HTTP/2") or request.target in self.http1_only)
        ):
            return await self.http1.send(request)
        if mode == "2":
            return await self.http2.send(request)
        try:
            return await self.http2.send(request)
        except H2NotOffered as exc:
            if request.target not in self.http1_only:
                self.http1_only.add(request.target)
                logger.warning(
                    "%s does not speak HTTP/2 (%s): replaying HTTP/2 exchanges to it as HTTP/1.1",
                    request.target.origin,
                    exc,
                )
        return await self.http1.send(request)

    async def aclose(self) -> None:
        await self.http1.aclose()
        await self.http2.aclose()
