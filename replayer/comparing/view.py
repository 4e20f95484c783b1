"""`ResponseView`: an HTTP response as the comparison sees it, raw bytes and framing.

Production's answer comes from the recorded event, the shadow's and the
baseline's from what the replayer received; every comparison in
`replayer.comparing` (headers, bodies, gRPC calls, a WebSocket handshake)
reads the same view, so it lives apart from any one of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.records import HttpExchange


# Not frozen: built for every replayed record, where a frozen dataclass's slower
# construction shows (bench/replay.py); treat it as immutable all the same.
@dataclass(slots=True)
class ResponseView:
    """An HTTP response as the comparison sees it (production, shadow or baseline).

    Not `replayer.models.Response` (what a target answered, text headers): the
    comparison needs the raw bytes and, for production, the body's framing.
    `headers` are the raw pairs in wire order. `body` is the body as received,
    still content-encoded. `body_truncated` says it holds only a prefix of
    `body_length` bytes (-1 or None: length unknown); `body_sha256`, when
    known, is the SHA-256 (hex) of the whole body (a target's response the
    replayer truncated). `trailers`: raw pairs sent after the body (HTTP/2;
    gRPC's grpc-status), empty when there were none.
    """

    status: int
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    body_truncated: bool = False
    body_length: int | None = None
    body_sha256: str | None = None
    trailers: tuple[tuple[bytes, bytes], ...] = ()

    @classmethod
    def from_event(cls, event: HttpExchange) -> ResponseView | None:
        """The production response of a decoded `HttpExchange` event, or None if it had none."""
        response = event["response"]
        if response is None:
            return None
        message = response["message"]
        flat = message["headers"]
        trailers = message["trailers"] or ()
        return cls(
            status=response["status"],
            headers=tuple(zip(flat[0::2], flat[1::2], strict=True)),
            body=message["body"],
            body_truncated=message["body_truncated"],
            body_length=message["body_length"],
            trailers=tuple(zip(trailers[0::2], trailers[1::2], strict=True)),
        )

    @classmethod
    def of(
        cls,
        status: int,
        headers: Iterable[tuple[str | bytes, str | bytes]] = (),
        body: bytes = b"",
        trailers: Iterable[tuple[str | bytes, str | bytes]] = (),
    ) -> ResponseView:
        """A response from a client's parts; str header names/values are taken as latin-1."""

        def raw(x: str | bytes) -> bytes:
            return x.encode("latin-1", "replace") if isinstance(x, str) else x

        return cls(
            status,
            tuple((raw(n), raw(v)) for n, v in headers),
            body,
            trailers=tuple((raw(n), raw(v)) for n, v in trailers),
        )

    def header_values(self, name: str) -> list[bytes]:
        """Values of header `name` (case-insensitive), in order."""
        wanted = name.lower().encode("latin-1")
        return [v for n, v in self.headers if n.lower() == wanted]
