"""Group requests by endpoint: the method plus a path template.

`route("GET", "/users/17/orders/9?x=1")` is `GET /users/{id}/orders/{id}`, the
same endpoint as `/users/3/orders/4`: the query string and fragment are
dropped, and each path segment that looks like data rather than a name becomes
a typed placeholder (`classify_segment` lists them). Heuristics cannot know
every API, so `Router` also takes explicit patterns (`GET /articles/{slug}`),
tried first. Paths are recorded bytes from clients, so the result is made
printable: control characters become `\\xNN` escapes, safe for terminals and
logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from trafficmirror.plumbing.errors import ConfigError

_INT = re.compile(r"-?\d+")
_VERSION = re.compile(r"[vV]\d+(\.\d+)*")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EMAIL = re.compile(r"[^@\s/]+@[^@\s/]+\.[A-Za-z]{2,}")
_TOKEN = re.compile(r"[A-Za-z0-9_\-+~]{16,}={0,2}")
_EXT = re.compile(r"(.+)\.([A-Za-z0-9]{1,5})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*")

#: Class transitions per character above which a token looks random, not like words.
_RANDOMNESS = 0.35


def printable(text: str) -> str:
    """`text` with control and bidi characters escaped as `\\xNN` / `\\uNNNN`."""

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _CONTROL.sub(escape, text)


def _char_class(ch: str) -> int:
    if ch.isdigit():
        return 0
    if ch.islower():
        return 1
    if ch.isupper():
        return 2
    return 3


def _looks_random(segment: str) -> bool:
    body = segment.rstrip("=")
    # Digits are required: camelCase names have case changes too (getUserById), and
    # a random token of 16+ characters lacks digits only a few times in a hundred.
    if not (any(c.isdigit() for c in body) and any(c.isalpha() for c in body)):
        return False
    classes = [_char_class(c) for c in body]
    transitions = sum(1 for x, y in zip(classes, classes[1:], strict=False) if x != y)
    return transitions / len(body) >= _RANDOMNESS


def classify_segment(segment: str) -> str | None:
    """The placeholder for one path segment, or None if it is a name to keep.

    ==========  ==========================================================
    `{id}`      a (possibly negative) integer: `17`, `-3`
    `{uuid}`    an RFC 4122 UUID, any case
    `{ulid}`    a ULID (26 characters of Crockford base32)
    `{hex}`     a hex string of 16+ characters, or 8+ with digits and letters
                (object ids, hashes): `5f2b7c9e0a1d4e3f8b6c2a1d`
    `{date}`    an ISO date `2024-05-01`
    `{email}`   `someone@example.com`
    `{token}`   a long base64/base64url-looking token (16+ characters, letters
                and digits alternating like random data, not like words)
    ==========  ==========================================================

    Version segments (`v2`, `v1.1`) and words, slugs and camelCase names stay
    as they are. `template_segment` also keeps the extension of a segment
    `NAME.EXT` whose NAME is data (`{id}.json`).
    """
    if not segment or _VERSION.fullmatch(segment):
        return None
    if _INT.fullmatch(segment):
        return "{id}"
    if _UUID.fullmatch(segment):
        return "{uuid}"
    if _DATE.fullmatch(segment):
        return "{date}"
    if _EMAIL.fullmatch(segment):
        return "{email}"
    if _ULID.fullmatch(segment) and any(c.isdigit() for c in segment):
        return "{ulid}"
    if _HEX.fullmatch(segment):
        has_digit = any(c.isdigit() for c in segment)
        has_alpha = any(not c.isdigit() for c in segment)
        if len(segment) >= 16 or (len(segment) >= 8 and has_digit and has_alpha):
            return "{hex}"
        return None
    if _TOKEN.fullmatch(segment) and _looks_random(segment):
        return "{token}"
    return None


def template_segment(raw: str) -> str:
    """One raw path segment as it appears in the endpoint template."""
    # Matrix parameters (`;jsessionid=...`) are per-request data.
    name = raw.split(";", 1)[0]
    decoded = unquote(name)
    placeholder = classify_segment(decoded)
    if placeholder:
        return placeholder
    ext = _EXT.fullmatch(decoded)
    if ext:
        placeholder = classify_segment(ext.group(1))
        if placeholder:
            return f"{placeholder}.{ext.group(2)}"
    return name


def request_path(target: str) -> str:
    """The path of a request target: no scheme/authority, query or fragment."""
    absolute = _ABSOLUTE.match(target)
    if absolute:
        target = target[absolute.end() :] or "/"
    for sep in "?#":
        target = target.split(sep, 1)[0]
    return target or "/"


@lru_cache(maxsize=16384)
def template_path(path: str) -> str:
    """The template of a path (no query): `/users/17` → `/users/{id}`."""
    if not path.startswith("/"):
        return path  # `*` (OPTIONS *) or an authority (CONNECT): nothing to template
    return "/".join(template_segment(s) for s in path.split("/"))


def _text(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value


@dataclass(frozen=True)
class RoutePattern:
    """An explicit endpoint pattern: `[METHOD ]/literal/{name}/...`."""

    text: str
    method: str | None
    segments: tuple[str | None, ...]  # None: a placeholder that matches any one segment

    @classmethod
    def parse(cls, text: str) -> RoutePattern:
        """Parse `GET /articles/{slug}` or `/articles/{slug}`; raises `ConfigError`."""
        method, _, path = text.strip().rpartition(" ")
        if not path.startswith("/"):
            raise ConfigError(f"bad route pattern {text!r}: the path must start with /")
        segments: list[str | None] = []
        for seg in path.split("/"):
            if seg.startswith("{") and seg.endswith("}") and len(seg) > 2:
                segments.append(None)
            elif "{" in seg or "}" in seg:
                raise ConfigError(f"bad route pattern {text!r}: {{name}} must be a whole segment")
            else:
                segments.append(seg)
        return cls(path, method.strip().upper() or None, tuple(segments))

    def matches(self, method: str, path: str) -> bool:
        """True if `method` and the (query-less) `path` fit this pattern."""
        if self.method is not None and self.method != method:
            return False
        parts = path.split("/")
        if len(parts) != len(self.segments):
            return False
        return all(
            want is None or want == got for want, got in zip(self.segments, parts, strict=True)
        )


class Router:
    """Maps requests to endpoints: explicit patterns first, then the heuristics."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns = tuple(RoutePattern.parse(p) for p in patterns)

    def __call__(self, method: str | bytes, target: str | bytes) -> str:
        """The endpoint of a request: `GET /users/{id}/orders/{id}`."""
        verb = _text(method).upper()
        path = request_path(_text(target))
        for pattern in self.patterns:
            if pattern.matches(verb, path):
                return printable(f"{verb} {pattern.text}")
        return printable(f"{verb} {template_path(path)}")


_DEFAULT = Router()


def route(method: str | bytes, target: str | bytes) -> str:
    """The endpoint of a request with the built-in heuristics only (see the module doc)."""
    return _DEFAULT(method, target)
