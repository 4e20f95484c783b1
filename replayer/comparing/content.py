"""Comparing two response bodies: content decoding, then JSON, text or bytes.

The body is compared after its Content-Encoding is undone (gzip, deflate, and
br when the brotli module is importable; bounded, so a decompression bomb is
compared as raw bytes): structurally when both sides are JSON (`diff_json`, one
difference per path), line by line when both are text, by size and SHA-256
otherwise. A side kept only in part (a truncated body) is compared by its
prefix and whole length.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import zlib
from typing import Any

from replayer.comparing.diff import Difference, diff_json, diff_text
from replayer.comparing.mapped import MappedValues
from replayer.comparing.noise import Rules
from replayer.comparing.view import ResponseView

#: Decoded bodies larger than this are compared as raw bytes (decompression bombs).
MAX_DECODED_BYTES = 64 * 1024 * 1024

_BINARY_MEDIA = ("image/", "audio/", "video/", "font/", "application/octet-stream")
_BINARY_TYPES = {
    "application/pdf",
    "application/zip",
    "application/gzip",
    "application/x-protobuf",
    "application/protobuf",
    "application/grpc",
    "application/wasm",
}

try:  # brotli is optional: mitmproxy pulls it in, but nothing here requires it
    _brotli: Any = importlib.import_module("brotli")
except ImportError:  # pragma: no cover - depends on the environment
    _brotli = None


class _Undecodable(Exception):
    pass


def _inflate(data: bytes, wbits: int) -> bytes:
    decompressor = zlib.decompressobj(wbits)
    out = decompressor.decompress(data, MAX_DECODED_BYTES)
    if decompressor.unconsumed_tail:
        raise _Undecodable("too large")
    return out


def decode_content(response: ResponseView) -> bytes:
    """The body with its Content-Encoding undone; raw bytes if it cannot be undone."""
    values = [v for n, v in response.headers if n.lower() == b"content-encoding"]
    body = response.body
    if not values:  # most responses: nothing to undo
        return body
    codings = [c.strip().lower() for value in values for c in value.decode("latin-1").split(",")]
    try:
        for coding in reversed([c for c in codings if c and c != "identity"]):
            if coding in ("gzip", "x-gzip"):
                body = _inflate(body, 16 + zlib.MAX_WBITS)
            elif coding == "deflate":
                # RFC 9110 says zlib-wrapped, but some servers send raw deflate.
                try:
                    body = _inflate(body, zlib.MAX_WBITS)
                except zlib.error:
                    body = _inflate(body, -zlib.MAX_WBITS)
            elif coding == "br" and _brotli is not None:
                body = _brotli.decompress(body)
                if len(body) > MAX_DECODED_BYTES:
                    raise _Undecodable("too large")
            else:
                raise _Undecodable(coding)
    except Exception:  # zlib.error, brotli.error, _Undecodable ...
        # Comparing the raw bytes is still correct, only less precise.
        return response.body
    return body


def _media(response: ResponseView) -> tuple[str, str | None]:
    values = response.header_values("content-type")
    if not values:
        return "", None
    parts = values[0].decode("latin-1").split(";")
    media = parts[0].strip().lower()
    charset = None
    for param in parts[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"') or None
    return media, charset


def _is_binary_media(media: str) -> bool:
    return media.startswith(_BINARY_MEDIA) or media in _BINARY_TYPES


def _text(body: bytes, charset: str | None) -> str | None:
    if b"\x00" in body:
        return None
    try:
        return body.decode(charset or "utf-8")
    except (UnicodeDecodeError, LookupError):
        return None


def _parse_json(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def compare_bodies(
    production: ResponseView,
    shadow: ResponseView,
    rules: Rules,
    mapped: MappedValues | None = None,
) -> list[Difference]:
    """Body differences: JSON structure, text lines, or size and hash."""
    if production.body_truncated or shadow.body_truncated:
        return _compare_truncated(production, shadow)
    a, b = decode_content(production), decode_content(shadow)
    if a == b:
        return []
    media_a, charset_a = _media(production)
    media_b, charset_b = _media(shadow)
    if not (_is_binary_media(media_a) or _is_binary_media(media_b)):
        text_a, text_b = _text(a, charset_a), _text(b, charset_b)
        if text_a is not None and text_b is not None:
            text_a, text_b = rules.normalise_text(text_a), rules.normalise_text(text_b)
            if text_a == text_b:
                return []
            if _looks_json(media_a, text_a) or _looks_json(media_b, text_b):
                ok_a, doc_a = _parse_json(text_a)
                ok_b, doc_b = _parse_json(text_b)
                if ok_a and ok_b:
                    return diff_json(doc_a, doc_b, rules, mapped=mapped)
            if mapped:
                text_a = mapped.translate(text_a)
                if text_a == text_b:
                    return []
            return diff_text(text_a, text_b)
    if a == b:
        return []
    return [Difference("body_binary", "body", _describe_bytes(a), _describe_bytes(b))]


def _looks_json(media: str, text: str) -> bool:
    if "json" in media:
        return True
    start = text.lstrip()[:1]
    return start in ("{", "[")


def _describe_bytes(data: bytes, total: int | None = None) -> str:
    digest = hashlib.sha256(data).hexdigest()[:16]
    if total is not None and total != len(data):
        return f"{total} bytes (first {len(data)} sha256:{digest})"
    return f"{len(data)} bytes sha256:{digest}"


def _compare_truncated(production: ResponseView, shadow: ResponseView) -> list[Difference]:
    """Only a prefix was kept on some side: compare that prefix and the full lengths."""

    def length(r: ResponseView) -> int | None:
        if not r.body_truncated:
            return len(r.body)
        return r.body_length if r.body_length is not None and r.body_length >= 0 else None

    len_a, len_b = length(production), length(shadow)
    n = min(len(production.body), len(shadow.body))
    same_prefix = production.body[:n] == shadow.body[:n]
    if same_prefix and (len_a is None or len_b is None or len_a == len_b):
        # An unknown length (a streamed body) cannot be told apart: no evidence of a difference.
        return []
    return [
        Difference(
            "body_binary",
            "body",
            _describe_bytes(production.body, len_a),
            _describe_bytes(shadow.body, len_b),
        )
    ]
