"""Compare the answers to a gRPC call: status, message, trailers and the messages.

`responses.compare` hands a gRPC request (content type `application/grpc` or
`application/grpc+...`) here instead of comparing its body. The call's status
is `grpc-status` and `grpc-message`, from the trailers or the headers of a
Trailers-Only answer; other trailers compare like headers. The bodies are split
into length-prefixed messages: their count is compared, then each pair, field
by field when the method's types are known (`protodesc`: `messages[0].user.name`),
by bytes otherwise. gzip and deflate messages are inflated first, other
compressed ones compared as sent. Of a cut body only complete messages count.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from replayer.comparing.diff import MAX_BODY_DIFFERENCES, Difference, diff_json, short
from replayer.comparing.mapped import MappedValues
from replayer.comparing.noise import Rules
from trafficmirror.plumbing.grpcmedia import is_grpc_media

if TYPE_CHECKING:
    from replayer.comparing.protodesc import MethodTypes, ProtoDescriptors
    from replayer.comparing.view import ResponseView

#: Names that carry the call's status (trailers, or headers of a Trailers-Only answer).
STATUS_FIELDS = (b"grpc-status", b"grpc-message")

#: gRPC status codes by number (grpc/doc/statuscodes.md).
STATUS_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)

_PREFIX = struct.Struct(">BI")
#: A compressed message that inflates to more than this is compared by its bytes.
MAX_INFLATED_BYTES = 64 * 1024 * 1024
#: zlib's window bits for each grpc-encoding it can undo.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


@dataclass(frozen=True, slots=True)
class GrpcCall:
    """What the comparison knows of a gRPC call: its path and, with descriptors, its types."""

    path: str
    method: MethodTypes | None = None

    @classmethod
    def of_request(
        cls, path: bytes, headers: Sequence[bytes], protos: ProtoDescriptors | None = None
    ) -> GrpcCall | None:
        """The call of a recorded request (flat header pairs), or None if it is not gRPC."""
        content_type = None
        for i in range(0, len(headers) - 1, 2):
            if headers[i].lower() == b"content-type":
                content_type = headers[i + 1]
                break
        if not is_grpc_media(content_type):
            return None
        text = path.split(b"?", 1)[0].decode("utf-8", "backslashreplace")
        return cls(text, protos.method(text) if protos is not None else None)


@dataclass(frozen=True, slots=True)
class Frame:
    """One length-prefixed message: compressed (flag 1) or not, and its bytes."""

    compressed: bool
    data: bytes


def split_messages(body: bytes) -> tuple[list[Frame], bytes]:
    """The complete messages of `body`, and what is left after them (a cut-off last one)."""
    frames: list[Frame] = []
    view = memoryview(body)
    at = 0
    while len(body) - at >= _PREFIX.size:
        flag, length = _PREFIX.unpack_from(view, at)
        end = at + _PREFIX.size + length
        if end > len(body):
            break
        frames.append(Frame(flag == 1, bytes(view[at + _PREFIX.size : end])))
        at = end
    return frames, bytes(view[at:])


def _fields(response: ResponseView) -> tuple[dict[str, list[bytes]], dict[str, list[bytes]]]:
    """(trailers by lowercase name, the status fields of a Trailers-Only answer's headers)."""
    trailers: dict[str, list[bytes]] = {}
    for name, value in response.trailers:
        trailers.setdefault(name.decode("latin-1").lower(), []).append(value)
    in_headers: dict[str, list[bytes]] = {}
    for name, value in response.headers:
        if name.lower() in STATUS_FIELDS:
            in_headers.setdefault(name.decode("latin-1").lower(), []).append(value)
    return trailers, in_headers


def _status_text(values: list[bytes] | None) -> str | None:
    if not values:
        return None
    raw = values[0].decode("latin-1").strip()
    if raw.isdigit() and int(raw) < len(STATUS_NAMES):
        return f"{raw} {STATUS_NAMES[int(raw)]}"
    return short(raw)


def _message_text(values: list[bytes] | None) -> str | None:
    if values is None:
        return None
    # grpc-message is percent-encoded UTF-8 (PROTOCOL-HTTP2.md); shown decoded.
    return short(unquote(values[0].decode("latin-1"), errors="backslashreplace"))


def compare_call(
    production: ResponseView,
    shadow: ResponseView,
    rules: Rules,
    call: GrpcCall,
    mapped: MappedValues | None = None,
) -> list[Difference]:
    """Differences in status, message, trailers and messages (headers are compared apart)."""
    prod_trailers, prod_status = _fields(production)
    shad_trailers, shad_status = _fields(shadow)
    out: list[Difference] = []
    # The call's status: from the trailers, or else the headers (Trailers-Only).
    a = prod_trailers.get("grpc-status") or prod_status.get("grpc-status")
    b = shad_trailers.get("grpc-status") or shad_status.get("grpc-status")
    if (a[0] if a else None) != (b[0] if b else None):
        out.append(Difference("status", "grpc-status", _status_text(a), _status_text(b)))
    a = prod_trailers.get("grpc-message", prod_status.get("grpc-message"))
    b = shad_trailers.get("grpc-message", shad_status.get("grpc-message"))
    if (a or [b""])[0] != (b or [b""])[0]:  # absent and empty mean the same: no message
        policy = rules.header_policy("grpc-message")
        if policy != "skip":
            out.append(
                Difference(
                    "header", "grpc-message", _message_text(a), _message_text(b), policy == "noise"
                )
            )
    out.extend(_compare_trailers(prod_trailers, shad_trailers, rules))
    out.extend(compare_messages(production, shadow, rules, call, mapped))
    return out


def _compare_trailers(
    production: dict[str, list[bytes]], shadow: dict[str, list[bytes]], rules: Rules
) -> Iterable[Difference]:
    for name in [*production, *(n for n in shadow if n not in production)]:
        if name.encode("latin-1") in STATUS_FIELDS:
            continue
        policy = rules.header_policy(name)
        a, b = production.get(name), shadow.get(name)
        if policy == "skip" or a == b:
            continue
        yield Difference(
            "header", f"trailers.{name}", _show_values(a), _show_values(b), policy == "noise"
        )


def _show_values(values: list[bytes] | None) -> str | None:
    if values is None:
        return None
    return short(", ".join(v.decode("utf-8", "backslashreplace") for v in values))


def _encoding(response: ResponseView) -> str:
    for name, value in response.headers:
        if name.lower() == b"grpc-encoding":
            return value.decode("latin-1").strip().lower()
    return "identity"


def _inflate(frame: Frame, encoding: str) -> Frame:
    """`frame` uncompressed if its side's encoding can be undone; else as it is."""
    wbits = _WBITS.get(encoding)
    if not frame.compressed or wbits is None:
        return frame
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(frame.data, MAX_INFLATED_BYTES)
    except zlib.error:
        return frame
    if inflater.unconsumed_tail or not inflater.eof:
        return frame  # too large, or cut short
    return Frame(False, data)


def _unknown_fields(where: str, method: MethodTypes, one: Frame, other: Frame) -> list[Difference]:
    """A difference when two messages equal in every defined field differ in the others.

    Said only when their defined fields are equal byte for byte too (not merely
    within a tolerance): then what differs can only be the unknown fields.
    """
    (whole_a, known_a), (whole_b, known_b) = (
        method.reserialized(one.data),
        method.reserialized(other.data),
    )
    if known_a != known_b or whole_a == whole_b:
        return []
    shown = [
        f"{len(w) - len(k)} bytes of fields the descriptors lack"
        for w, k in ((whole_a, known_a), (whole_b, known_b))
    ]
    return [Difference("message", where, shown[0], shown[1])]


def _describe(frame: Frame) -> str:
    digest = hashlib.sha256(frame.data).hexdigest()[:16]
    compressed = "compressed, " if frame.compressed else ""
    return f"{compressed}{len(frame.data)} bytes sha256:{digest}"


def compare_messages(
    production: ResponseView,
    shadow: ResponseView,
    rules: Rules,
    call: GrpcCall,
    mapped: MappedValues | None = None,
) -> list[Difference]:
    """The messages of both bodies: count (unless a body was cut), then pair by pair."""
    a, rest_a = split_messages(production.body)
    b, rest_b = split_messages(shadow.body)
    if any(f.compressed for f in a) or any(f.compressed for f in b):
        encoding_a, encoding_b = _encoding(production), _encoding(shadow)
        a = [_inflate(f, encoding_a) for f in a]
        b = [_inflate(f, encoding_b) for f in b]
    cut = production.body_truncated or shadow.body_truncated
    out: list[Difference] = []
    if not cut and (rest_a or rest_b):
        # Not gRPC framing (or a body that broke off): the bodies are compared as bytes.
        if production.body != shadow.body:
            whole_a, whole_b = Frame(False, production.body), Frame(False, shadow.body)
            out.append(Difference("message", "body", _describe(whole_a), _describe(whole_b)))
        return out
    if not cut and len(a) != len(b):
        out.append(Difference("message", "messages.count", str(len(a)), str(len(b))))
    for index, (one, other) in enumerate(zip(a, b, strict=False)):
        if len(out) >= MAX_BODY_DIFFERENCES:
            break
        out.extend(_compare_message(index, one, other, rules, call.method, mapped))
    return out[:MAX_BODY_DIFFERENCES]


def _compare_message(
    index: int,
    one: Frame,
    other: Frame,
    rules: Rules,
    method: MethodTypes | None,
    mapped: MappedValues | None,
) -> list[Difference]:
    if one == other:
        return []
    where = f"messages[{index}]"
    if method is not None and not (one.compressed or other.compressed):
        docs: list[Any] = []
        try:
            docs = [method.decode(one.data), method.decode(other.data)]
        except ValueError:
            pass  # not of the method's type: compared by bytes below
        if docs:
            found = [
                Difference("message", where + d.path[1:], d.production, d.shadow, d.noise)
                for d in diff_json(docs[0], docs[1], rules, mapped=mapped)
            ]
            if not found:
                found = _unknown_fields(where, method, one, other)
            return found
    return [Difference("message", where, _describe(one), _describe(other))]
