"""Compare a shadow response with the production response recorded in the event.

`compare()` is pure: two `ResponseView`s and the noise `Rules` in, a list of
`Difference`s out, over the status code, the headers and the body (content
decoded; JSON by structure, text by line, anything else by size and hash).
`classify()` applies Diffy's idea to recorded traffic: a difference that also
occurs between production and a second copy of production (the baseline) is
noise, not a regression. A mirror capture has no production response: the
baseline's takes its place (`compare_exchange`). Values in a `Difference` are
short display strings (JSON text for JSON values, the line for text), cut at
`VALUE_LIMIT` characters; None means absent. A gRPC call's status, trailers and
messages are compared by `replayer.comparing.grpc` instead of the body.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import zlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from replayer.comparing.diff import (
    KINDS,
    MAX_BODY_DIFFERENCES,
    MAX_TEXT_HUNKS,
    VALUE_LIMIT,
    Difference,
    Kind,
    diff_json,
    diff_text,
    short,
    show_json,
)
from replayer.comparing.grpc import STATUS_FIELDS, GrpcCall, compare_call
from replayer.comparing.mapped import MappedValues
from replayer.comparing.noise import Rules
from schemas.records import HttpExchange

if TYPE_CHECKING:
    from replayer.comparing.protodesc import ProtoDescriptors

__all__ = [
    "KINDS",
    "MAX_BODY_DIFFERENCES",
    "MAX_DECODED_BYTES",
    "MAX_TEXT_HUNKS",
    "MIRROR_CAPTURE",
    "VALUE_LIMIT",
    "Difference",
    "GrpcCall",
    "Kind",
    "MappedValues",
    "ResponseView",
    "classify",
    "compare",
    "compare_bodies",
    "compare_exchange",
    "compare_headers",
    "decode_content",
    "diff_json",
    "diff_text",
    "is_mirror_capture",
]

#: `recorder.capture` of an event recorded by `record --mirror` (no production response).
MIRROR_CAPTURE = "mirror"
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


# -- entry points -----------------------------------------------------------------


def compare(
    production: ResponseView,
    shadow: ResponseView,
    rules: Rules | None = None,
    mapped: MappedValues | None = None,
    call: GrpcCall | None = None,
) -> list[Difference]:
    """Every difference between `production` and `shadow` under `rules` (default: none).

    * the status code (not the reason phrase, which servers word freely);
    * headers, by lowercase name, each name's values in order, except the ones
      the rules skip (Date, Server, request ids ...; see
      `noise.DEFAULT_IGNORED_HEADERS`);
    * the body after undoing Content-Encoding (gzip, deflate, and br when the
      brotli module is importable): structurally when both sides are JSON (one
      difference per added, removed or changed path), line by line when both
      are text, by size and SHA-256 otherwise.

    `mapped`: (production, shadow) value pairs of correlated IDs; a header value,
    JSON value or text that differs only by them is equal (`MappedValues`).
    With `call` (a gRPC request), the status code and headers are compared as
    above, and the call's status, trailers and messages instead of the body
    (`replayer.comparing.grpc.compare_call`).
    """
    rules = rules or Rules()
    out: list[Difference] = []
    if production.status != shadow.status:
        out.append(Difference("status", "status", str(production.status), str(shadow.status)))
    if call is not None:
        # A Trailers-Only answer has grpc-status in its headers: compared as the call's status.
        out.extend(
            compare_headers(_without_status(production), _without_status(shadow), rules, mapped)
        )
        out.extend(compare_call(production, shadow, rules, call, mapped))
        return out
    out.extend(compare_headers(production, shadow, rules, mapped))
    out.extend(compare_bodies(production, shadow, rules, mapped))
    return out


def _without_status(response: ResponseView) -> ResponseView:
    headers = tuple(h for h in response.headers if h[0].lower() not in STATUS_FIELDS)
    return replace(response, headers=headers)


def is_mirror_capture(event: HttpExchange) -> bool:
    """True for an event of `record --mirror`: the recorder answered, production is unknown."""
    return event["recorder"]["capture"] == MIRROR_CAPTURE


def compare_exchange(
    event: HttpExchange,
    shadow: ResponseView,
    rules: Rules | None = None,
    baseline: ResponseView | None = None,
    *,
    equal_values: Collection[tuple[str, str]] = (),
    baseline_equal_values: Collection[tuple[str, str]] = (),
    protos: ProtoDescriptors | None = None,
) -> list[Difference]:
    """Compare the shadow with the event's production response, classified by the baseline.

    With `baseline`, the differences production also has with the baseline are
    marked noise. A mirror capture has no production response: with `baseline`
    the baseline's response takes production's place (only the rules say what is
    noise then: no second copy is left to tell a nondeterministic field), and
    without one there are no differences. Neither are there when production
    failed (the event records an upstream error): there is nothing to compare with.
    `equal_values` / `baseline_equal_values`: the (production, shadow) pairs value
    correlation mapped for the shadow's / the baseline's request of this exchange.
    A gRPC request is compared as a call (`GrpcCall`); `protos`, the
    descriptors of `--proto-descriptor-set`, let its messages compare field by field.
    """
    call = _grpc_call(event, protos)
    production = ResponseView.from_event(event)
    if production is None:
        if baseline is not None and is_mirror_capture(event):
            return compare(baseline, shadow, rules, call=call)
        return []
    mapped = MappedValues(equal_values) if equal_values else None
    differences = compare(production, shadow, rules, mapped, call)
    if baseline is not None:
        base_mapped = MappedValues(baseline_equal_values) if baseline_equal_values else None
        differences = classify(differences, compare(production, baseline, rules, base_mapped, call))
    return differences


def _grpc_call(event: HttpExchange, protos: ProtoDescriptors | None) -> GrpcCall | None:
    request = event.get("request")  # absent only in hand-made partial events
    if request is None or event.get("method") != "POST":  # every gRPC call is a POST
        return None
    return GrpcCall.of_request(event["path"], request["headers"], protos)


def classify(
    shadow_diffs: Sequence[Difference], baseline_diffs: Iterable[Difference]
) -> list[Difference]:
    """Mark as noise each shadow difference production also has with the baseline.

    A shadow difference is noise when the baseline differs in the same kind at
    the same path or at a JSON ancestor of it (baseline differs at `$.meta`:
    the shadow's `$.meta.ts` is noise). Values are not compared: a field that
    differs between two copies of production is nondeterministic, whatever it holds.
    """
    noisy = {(d.kind, d.path) for d in baseline_diffs}
    if not noisy:
        return list(shadow_diffs)
    result = []
    for diff in shadow_diffs:
        if not diff.noise and _covered(diff, noisy):
            diff = Difference(diff.kind, diff.path, diff.production, diff.shadow, noise=True)
        result.append(diff)
    return result


def _covered(diff: Difference, noisy: set[tuple[Kind, str]]) -> bool:
    if (diff.kind, diff.path) in noisy:
        return True
    if diff.kind not in ("body_json", "message"):
        return False
    return any(
        kind == diff.kind and (diff.path.startswith(path + ".") or diff.path.startswith(path + "["))
        for kind, path in noisy
    )


# -- headers ----------------------------------------------------------------------


def _header_map(response: ResponseView) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for name, value in response.headers:
        key = name.decode("latin-1").lower()
        values.setdefault(key, []).append(value.decode("utf-8", "backslashreplace"))
    return values


def _show_header(values: list[str] | None) -> str | None:
    if values is None:
        return None
    if len(values) == 1:
        return short(values[0])
    return show_json(values)


def compare_headers(
    production: ResponseView,
    shadow: ResponseView,
    rules: Rules,
    mapped: MappedValues | None = None,
) -> list[Difference]:
    """Header differences by lowercase name; duplicate values compare in order."""
    prod, shad = _header_map(production), _header_map(shadow)
    out = []
    for name in [*prod, *(n for n in shad if n not in prod)]:
        policy = rules.header_policy(name)
        if policy == "skip":
            continue
        a, b = prod.get(name), shad.get(name)
        if a != b and a is not None and b is not None and mapped:
            if [mapped.translate(v) for v in a] == b:
                continue
        if a != b:
            out.append(
                Difference("header", name, _show_header(a), _show_header(b), policy == "noise")
            )
    return out


# -- bodies -----------------------------------------------------------------------


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
