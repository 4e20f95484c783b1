"""A recorded body's content as the redactor reads it: type, encoding, declared length.

Helpers for `recorder.redact`, on the flat `[name, value, ...]` header list of
an event being built: the value of a header, the media type of a Content-Type,
whether a body is (or looks like) JSON, a Content-Encoding undone and done
again (mitmproxy's codecs: gzip, deflate, br, zstd), and Content-Length set to
a redacted body's new length so the event stays self-consistent.
"""

from __future__ import annotations

from collections.abc import Sequence

CONTENT_TYPE = b"content-type"
CONTENT_ENCODING = b"content-encoding"
CONTENT_LENGTH = b"content-length"


def type_and_encoding(flat: Sequence[bytes]) -> tuple[bytes | None, bytes]:
    """(Content-Type or None, Content-Encoding lower case or b"") in one pass over the headers."""
    content_type: bytes | None = None
    encoding: bytes | None = None
    for i in range(0, len(flat) - 1, 2):
        name = flat[i].lower()
        if name == CONTENT_TYPE and content_type is None:
            content_type = flat[i + 1]
        elif name == CONTENT_ENCODING and encoding is None:
            encoding = flat[i + 1]
    return content_type, (encoding or b"").strip().lower()


def set_length(flat_headers: list[bytes], length: int) -> None:
    """Content-Length in `flat_headers` says `length` (the event stays self-consistent)."""
    for i in range(0, len(flat_headers) - 1, 2):
        if flat_headers[i].lower() == CONTENT_LENGTH:
            flat_headers[i + 1] = str(length).encode()


def media(content_type: bytes | None) -> bytes:
    """The media type of a Content-Type value, lower case, without parameters."""
    return (content_type or b"").split(b";", 1)[0].strip().lower()


def is_json_type(content_type: bytes | None) -> bool:
    """True for `application/json` and `*+json`."""
    if not content_type:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


def looks_json(raw: bytes) -> bool:
    """True when the body starts (after white space) like a JSON object or array."""
    start = raw[:64].lstrip()
    return start[:1] in (b"{", b"[")


def decode(raw: bytes, encoding: str) -> bytes:
    """`raw` with its Content-Encoding (gzip, deflate, br, zstd) undone; raises if it cannot be."""
    from mitmproxy.net import encoding as codecs

    decoded = codecs.decode(raw, encoding)
    if not isinstance(decoded, bytes):
        raise ValueError(f"cannot decode {encoding}")
    return decoded


def encode(raw: bytes, encoding: str) -> bytes:
    """`raw` with the Content-Encoding applied again."""
    from mitmproxy.net import encoding as codecs

    encoded = codecs.encode(raw, encoding)
    if not isinstance(encoded, bytes):
        raise ValueError(f"cannot encode {encoding}")
    return encoded
