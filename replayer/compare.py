"""Compare a shadow response with the production response recorded in the event.

`compare()` is pure: two `Response`s and the noise `Rules` in, a list of
`Difference`s out. It compares

* the status code (not the reason phrase, which servers word freely);
* headers, by lowercase name, each name's values in order, except the ones
  the rules skip (Date, Server, request ids ...; see `noise.DEFAULT_IGNORED_HEADERS`);
* the body after undoing Content-Encoding (gzip, deflate, and br when the
  brotli module is importable): structurally when both sides are JSON (one
  difference per added, removed or changed path), line by line when both are
  text, by size and SHA-256 otherwise.

`classify()` applies Diffy's idea to recorded traffic: a difference that also
occurs between production and a second copy of production (the baseline) is
noise, not a regression.

Values in a `Difference` are short display strings (JSON text for JSON values,
the line for text), cut at `VALUE_LIMIT` characters; None means absent.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from replayer.noise import Rules, Segment, format_path

Kind = Literal["status", "header", "body_json", "body_text", "body_binary"]
#: Every difference kind, in the order reports show them.
KINDS: tuple[Kind, ...] = ("status", "header", "body_json", "body_text", "body_binary")

#: Display values are cut to this many characters.
VALUE_LIMIT = 200
#: At most this many differences per body (a rewritten array must not yield thousands).
MAX_BODY_DIFFERENCES = 100
#: At most this many changed line ranges are reported for a text body.
MAX_TEXT_HUNKS = 10
#: Decoded bodies larger than this are compared as raw bytes (decompression bombs).
MAX_DECODED_BYTES = 64 * 1024 * 1024
#: Arrays longer than this are compared index by index instead of aligned.
_ALIGN_LIMIT = 1000

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


@dataclass(frozen=True)
class Response:
    """An HTTP response as the comparison sees it (production, shadow or baseline).

    `headers` are the raw pairs in wire order. `body` is the body as received,
    still content-encoded. `body_truncated` says it holds only a prefix of
    `body_length` bytes (-1 or None: length unknown).
    """

    status: int
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    body_truncated: bool = False
    body_length: int | None = None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Response | None:
        """The production response of a decoded `HttpExchange` event, or None if it had none."""
        response = event.get("response")
        if response is None:
            return None
        message = response["message"]
        flat = message["headers"]
        return cls(
            status=int(response["status"]),
            headers=tuple(zip(flat[0::2], flat[1::2], strict=True)),
            body=bytes(message["body"]),
            body_truncated=bool(message.get("body_truncated", False)),
            body_length=message.get("body_length"),
        )

    def header_values(self, name: str) -> list[bytes]:
        """Values of header `name` (case-insensitive), in order."""
        wanted = name.lower().encode("latin-1")
        return [v for n, v in self.headers if n.lower() == wanted]


@dataclass(frozen=True)
class Difference:
    """One way the shadow's response differs from production's.

    `path` is `status`, a lowercase header name, a JSON path (`$.items[3].price`),
    `line N` for text, or `body` for binary. `production`/`shadow` are short
    display values, None where the value is absent. `noise` marks differences
    the rules or the baseline say do not matter.
    """

    kind: Kind
    path: str
    production: str | None
    shadow: str | None
    noise: bool = False

    def to_record(self) -> dict[str, Any]:
        """The `Difference` record of the `replay_result` schema."""
        return {
            "kind": self.kind,
            "path": self.path,
            "production": self.production,
            "shadow": self.shadow,
            "noise": self.noise,
        }


def short(text: str, limit: int = VALUE_LIMIT) -> str:
    """`text` cut to `limit` characters, with an ellipsis if it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show_json(value: Any) -> str:
    return short(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


# -- entry points -----------------------------------------------------------------


def compare(production: Response, shadow: Response, rules: Rules | None = None) -> list[Difference]:
    """Every difference between `production` and `shadow` under `rules` (default: none)."""
    rules = rules or Rules()
    out: list[Difference] = []
    if production.status != shadow.status:
        out.append(Difference("status", "status", str(production.status), str(shadow.status)))
    out.extend(compare_headers(production, shadow, rules))
    out.extend(compare_bodies(production, shadow, rules))
    return out


def compare_exchange(
    event: Mapping[str, Any],
    shadow: Response,
    rules: Rules | None = None,
    baseline: Response | None = None,
) -> list[Difference]:
    """Compare the shadow with the event's production response, classified by the baseline.

    Returns no differences when production has no response (the event records an
    upstream error): there is nothing to compare with. With `baseline`, the
    differences production also has with the baseline are marked noise.
    """
    production = Response.from_event(event)
    if production is None:
        return []
    differences = compare(production, shadow, rules)
    if baseline is not None:
        differences = classify(differences, compare(production, baseline, rules))
    return differences


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
    if diff.kind != "body_json":
        return False
    return any(
        kind == "body_json"
        and (diff.path.startswith(path + ".") or diff.path.startswith(path + "["))
        for kind, path in noisy
    )


# -- headers ----------------------------------------------------------------------


def _header_map(response: Response) -> dict[str, list[str]]:
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
    return _show_json(values)


def compare_headers(production: Response, shadow: Response, rules: Rules) -> list[Difference]:
    """Header differences by lowercase name; duplicate values compare in order."""
    prod, shad = _header_map(production), _header_map(shadow)
    out = []
    for name in [*prod, *(n for n in shad if n not in prod)]:
        policy = rules.header_policy(name)
        if policy == "skip":
            continue
        a, b = prod.get(name), shad.get(name)
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


def decode_content(response: Response) -> bytes:
    """The body with its Content-Encoding undone; raw bytes if it cannot be undone."""
    codings = [
        c.strip().lower()
        for value in response.header_values("content-encoding")
        for c in value.decode("latin-1").split(",")
    ]
    body = response.body
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


def _media(response: Response) -> tuple[str, str | None]:
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


def compare_bodies(production: Response, shadow: Response, rules: Rules) -> list[Difference]:
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
                    return diff_json(doc_a, doc_b, rules)
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


def _compare_truncated(production: Response, shadow: Response) -> list[Difference]:
    """Only a prefix was kept on some side: compare that prefix and the full lengths."""

    def length(r: Response) -> int | None:
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


# -- text ---------------------------------------------------------------------------


def diff_text(a: str, b: str, max_hunks: int = MAX_TEXT_HUNKS) -> list[Difference]:
    """The first `max_hunks` changed line ranges, as `line N` (production's line number)."""
    lines_a, lines_b = a.split("\n"), b.split("\n")
    # autojunk speeds up big inputs but misaligns small ones; only big ones need it.
    big = len(lines_a) + len(lines_b) > 5000
    matcher = difflib.SequenceMatcher(None, lines_a, lines_b, autojunk=big)
    out: list[Difference] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if len(out) >= max_hunks:
            break
        path = f"line {i1 + 1}" if i2 - i1 <= 1 else f"line {i1 + 1}-{i2}"
        prod = short("\n".join(lines_a[i1:i2])) if i2 > i1 else None
        shad = short("\n".join(lines_b[j1:j2])) if j2 > j1 else None
        out.append(Difference("body_text", path, prod, shad))
    return out


# -- JSON ---------------------------------------------------------------------------


@dataclass
class _Walk:
    rules: Rules
    limit: int
    out: list[Difference] = field(default_factory=list)

    def full(self) -> bool:
        return len(self.out) >= self.limit

    def add(
        self, path: Sequence[Segment], a: Any, b: Any, absent: str = "", noise: bool = False
    ) -> None:
        prod = None if absent == "a" else _show_json(a)
        shad = None if absent == "b" else _show_json(b)
        self.out.append(Difference("body_json", format_path(path), prod, shad, noise))


def diff_json(
    a: Any, b: Any, rules: Rules | None = None, limit: int = MAX_BODY_DIFFERENCES
) -> list[Difference]:
    """Structural differences between two parsed JSON documents.

    Removed values have `shadow=None`, added ones `production=None`. A subtree an
    ignore pattern matches yields at most one difference, marked noise, at its
    root. Numbers compare within the rules' tolerance; `true` and `1` differ.
    """
    walk = _Walk(rules or Rules(), limit)
    _walk(walk, a, b, [], check_ignore=True)
    return walk.out


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _walk(w: _Walk, a: Any, b: Any, path: list[Segment], check_ignore: bool) -> None:
    if w.full():
        return
    if check_ignore and w.rules.ignore_paths and any(p.matches(path) for p in w.rules.ignore_paths):
        probe = _Walk(w.rules, 1)
        _walk(probe, a, b, path, check_ignore=False)
        if probe.out:
            w.add(path, a, b, noise=True)
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key, value in a.items():
            if key in b:
                _walk(w, value, b[key], [*path, key], check_ignore)
            elif not w.full():
                _removed_or_added(w, [*path, key], value, "b", check_ignore)
        for key, value in b.items():
            if key not in a and not w.full():
                _removed_or_added(w, [*path, key], value, "a", check_ignore)
    elif isinstance(a, list) and isinstance(b, list):
        if w.rules.unordered(path):
            _walk_unordered(w, a, b, path, check_ignore)
        else:
            _walk_ordered(w, a, b, path, check_ignore)
    elif _is_number(a) and _is_number(b):
        if not w.rules.numbers_equal(a, b):
            w.add(path, a, b)
    elif type(a) is not type(b) or a != b:
        w.add(path, a, b)


def _removed_or_added(w: _Walk, path: list[Segment], value: Any, absent: str, check: bool) -> None:
    # Ancestors were checked on the way down; only the value's own path is left.
    noise = check and any(p.matches(path) for p in w.rules.ignore_paths)
    w.add(path, value, value, absent=absent, noise=noise)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _walk_ordered(w: _Walk, a: list[Any], b: list[Any], path: list[Segment], check: bool) -> None:
    if len(a) > _ALIGN_LIMIT or len(b) > _ALIGN_LIMIT:
        opcodes: Sequence[tuple[str, int, int, int, int]] = [("replace", 0, len(a), 0, len(b))]
    else:
        # Align first, so one inserted element reads as one addition, not a shifted tail.
        matcher = difflib.SequenceMatcher(
            None, [_canon(x) for x in a], [_canon(x) for x in b], autojunk=False
        )
        opcodes = matcher.get_opcodes()
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            continue
        pairs = min(i2 - i1, j2 - j1)
        for k in range(pairs):
            _walk(w, a[i1 + k], b[j1 + k], [*path, i1 + k], check)
        for i in range(i1 + pairs, i2):
            if w.full():
                return
            _removed_or_added(w, [*path, i], a[i], "b", check)
        for j in range(j1 + pairs, j2):
            if w.full():
                return
            _removed_or_added(w, [*path, j], b[j], "a", check)


def _walk_unordered(w: _Walk, a: list[Any], b: list[Any], path: list[Segment], check: bool) -> None:
    keys_a = [_canon(x) for x in a]
    keys_b = [_canon(x) for x in b]
    available: dict[str, list[int]] = {}
    for j, key in enumerate(keys_b):
        available.setdefault(key, []).append(j)
    left_a = []
    for i, key in enumerate(keys_a):
        slots = available.get(key)
        if slots:
            slots.pop()
        else:
            left_a.append(i)
    left_b = sorted((j for slots in available.values() for j in slots))
    # What is left differs somehow: pair it up in a stable order and diff the pairs.
    left_a.sort(key=lambda i: keys_a[i])
    left_b.sort(key=lambda j: keys_b[j])
    for i, j in zip(left_a, left_b, strict=False):
        _walk(w, a[i], b[j], [*path, i], check)
    for i in left_a[len(left_b) :]:
        if w.full():
            return
        _removed_or_added(w, [*path, i], a[i], "b", check)
    for j in left_b[len(left_a) :]:
        if w.full():
            return
        _removed_or_added(w, [*path, j], b[j], "a", check)
