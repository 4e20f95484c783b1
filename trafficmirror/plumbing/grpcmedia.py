"""Is this a gRPC request? Decided by its content type, in one place.

gRPC over HTTP/2 says `application/grpc`, or `application/grpc+proto`,
`application/grpc+json` and so on, with optional parameters; the name is
case-insensitive. gRPC-Web (`application/grpc-web...`) is not gRPC here: it
runs over HTTP/1.1 as well and ends its calls without HTTP trailers. The
recorder asks it to pick HTTP/2 upstream, the replayer to send `te: trailers`
and to compare a call instead of a body; neither may import the other, so the
answer lives in the plumbing.
"""

from __future__ import annotations

_GRPC = b"application/grpc"
_GRPC_SUBTYPE = b"application/grpc+"


def is_grpc_media(content_type: bytes | str | None) -> bool:
    """True for `application/grpc` and `application/grpc+proto` etc.; not gRPC-Web."""
    if content_type is None:
        return False
    if isinstance(content_type, str):
        content_type = content_type.encode("latin-1", "replace")
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == _GRPC or media.startswith(_GRPC_SUBTYPE)
