"""Secrets in query strings and form bodies, redacted by field name.

`recorder.redact.Redactor` calls these on the copy of the exchange that becomes
the event. A query string (`?api_key=...`) and an
`application/x-www-form-urlencoded` body are `name=value` pairs joined by `&`;
a `multipart/form-data` body is parts, each named in its Content-Disposition.
A field matches a rule by its name, percent-decoded (`+` is a space) and
compared without case. A matched value is replaced (`mask`, `hmac`: what
`replace` returns) or the whole field is removed (`drop`); everything else
stays byte for byte, and input in which nothing matched is returned as the very
same object, so a raw path stays exact. A body cut at the cap is redacted as
far as it goes: a value cut short is still a value, and is replaced.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import unquote_to_bytes

#: The usual secret names, redacted unless the user turns the default list off
#: (compared percent-decoded and without case; docs/security.md lists them).
DEFAULT_PARAMS = (
    "access_token",
    "api-key",
    "api_key",
    "apikey",
    "auth_token",
    "client_secret",
    "id_token",
    "passwd",
    "password",
    "private_token",
    "pwd",
    "refresh_token",
    "secret",
    "session_token",
    "sig",
    "signature",
    "token",
    "x-amz-credential",
    "x-amz-security-token",
    "x-amz-signature",
    "x-goog-credential",
    "x-goog-signature",
)
#: Replaces one matched value: (mode, the value as sent) -> the bytes to record.
Replace = Callable[[str, bytes], bytes]

FORM = b"application/x-www-form-urlencoded"
MULTIPART = b"multipart/form-data"

_BOUNDARY_RE = re.compile(rb'boundary\s*=\s*(?:"([^"]+)"|([^\s;,]+))', re.IGNORECASE)
# `\bname`: the `name` parameter, not the end of `filename`.
_NAME_RE = re.compile(
    rb'^content-disposition\s*:[^\r\n]*?\bname\s*=\s*(?:"([^"]*)"|([^\s;]+))',
    re.IGNORECASE | re.MULTILINE,
)


def field_name(raw: bytes) -> str:
    """A form or query field name as rules compare it: percent-decoded, `+` a space, lower case."""
    if b"%" in raw or b"+" in raw:
        raw = unquote_to_bytes(raw.replace(b"+", b" "))
    return raw.decode("utf-8", "replace").lower()


def field_value(raw: bytes) -> bytes:
    """A query or urlencoded value as the app reads it: percent-decoded, `+` a space."""
    return unquote_to_bytes(raw.replace(b"+", b" "))


def redact_pairs(
    data: bytes, rules: Mapping[str, str], replace: Replace, applied: list[tuple[str, str]]
) -> bytes:
    """`name=value&...` (a query string or urlencoded form) with the rules applied.

    (name, mode) of every rule that matched is added to `applied`, once.
    """
    pieces = data.split(b"&")
    out: list[bytes] = []
    changed = False
    for piece in pieces:
        name, eq, value = piece.partition(b"=")
        key = field_name(name) if eq else ""
        mode = rules.get(key) if key else None
        if mode is None:
            out.append(piece)
            continue
        changed = True
        _note(applied, key, mode)
        if mode != "drop":
            out.append(name + b"=" + replace(mode, value))
    return b"&".join(out) if changed else data


def quick_filter(names: Iterable[str]) -> frozenset[bytes] | None:
    """The names as bytes, for a fast test of a plain query (None: no such test, always look).

    Made only when every name is ASCII (bytes compare case-insensitively only
    there); a query with `%`, `+` or a byte beyond ASCII (a name that may be
    encoded, or lower-case to a rule's) is always looked at in full (`redact_query`).
    """
    encoded = frozenset(name.encode() for name in names)
    if not encoded or not all(name.isascii() for name in encoded):
        return None
    return encoded


def redact_query(
    path: bytes,
    rules: Mapping[str, str],
    replace: Replace,
    applied: list[tuple[str, str]],
    quick: frozenset[bytes] | None = None,
) -> bytes:
    """A request target (`/p?query`) with the rules applied to its query; `path` if none matched.

    `quick` (`quick_filter` of the rules' names) skips, cheaply, a query that
    cannot match: most requests on the live path.
    """
    base, question, query = path.partition(b"?")
    if not question or not query:
        return path
    if quick is not None and b"%" not in query and b"+" not in query and query.isascii():
        for piece in query.split(b"&"):
            if piece.partition(b"=")[0].lower() in quick:
                break
        else:
            return path
    redacted = redact_pairs(query, rules, replace, applied)
    return path if redacted is query else base + b"?" + redacted


def boundary(content_type: bytes) -> bytes | None:
    """The boundary parameter of a multipart Content-Type, or None."""
    match = _BOUNDARY_RE.search(content_type)
    if match is None:
        return None
    return match.group(1) or match.group(2)


def redact_multipart(
    body: bytes,
    delimiter_token: bytes,
    rules: Mapping[str, str],
    replace: Replace,
    applied: list[tuple[str, str]],
) -> bytes:
    """A multipart body with the rules applied to the contents of its named parts.

    A part runs from its delimiter line (`--boundary`, at the start of the
    body or of a line) to the next one; a dropped part is removed with its
    delimiter. A part with no next delimiter (the body was cut) runs to the end.
    """
    delimiter = b"--" + delimiter_token
    starts: list[int] = []
    at = body.find(delimiter)
    while at != -1:
        if at == 0 or body[at - 2 : at] == b"\r\n":
            starts.append(at)
        at = body.find(delimiter, at + len(delimiter))
    out = bytearray()
    cursor = 0
    changed = False
    for index, start in enumerate(starts):
        after = start + len(delimiter)
        if body[after : after + 2] == b"--":
            break  # the closing delimiter
        following = starts[index + 1] if index + 1 < len(starts) else len(body)
        # The CRLF before the next delimiter belongs to that delimiter.
        end = following - 2 if following < len(body) else following
        line_end = body.find(b"\r\n", after, end)
        if line_end == -1:
            continue
        head_end = body.find(b"\r\n\r\n", line_end, end)
        if head_end == -1:
            continue  # cut inside the part's headers: no value kept
        match = _NAME_RE.search(body, line_end + 2, head_end + 2)
        if match is None:
            continue
        name = (match.group(1) if match.group(1) is not None else match.group(2)) or b""
        mode = rules.get(name.decode("utf-8", "replace").lower())
        if mode is None:
            continue
        _note(applied, name.decode("utf-8", "replace").lower(), mode)
        changed = True
        out += body[cursor:start]
        if mode == "drop":
            cursor = following
        else:
            content = head_end + 4
            out += body[start:content]
            out += replace(mode, body[content:end])
            cursor = end
    if not changed:
        return body
    out += body[cursor:]
    return bytes(out)


def _note(applied: list[tuple[str, str]], name: str, mode: str) -> None:
    if (name, mode) not in applied:
        applied.append((name, mode))
