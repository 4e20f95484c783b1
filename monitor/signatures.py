"""Signatures of attacks in one request: SQL injection, XSS, path traversal, scanners.

SQL injection and XSS are libinjection's (`libinjection-python`, the binding
of the C library WAFs such as ModSecurity use): it tokenizes a value as SQL
or HTML and matches the token fingerprint, not a list of words, so `O'Brien`
or `select a from b` in a search box pass and `1' OR '1'='1` does not. It
reads the values an application would: each query parameter (name and
value), each path segment, the values of the headers an attacker controls
(User-Agent, Referer, X-Forwarded-For, cookies), and form, JSON and text
bodies (binary bodies are skipped, at most `max_body_bytes` read). Path
traversal (`../` in any of its encodings, well-known target files) and
scanner user agents have no maintained library: short patterns, here.
Authorization headers and API keys are never read; a finding says where it
matched and what matched it, never the value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from urllib.parse import parse_qsl, unquote_to_bytes

import libinjection

from monitor.findings import Finding, Source
from replayer.comparing.endpoints import printable
from schemas.records import HttpExchange

#: Headers never read: credentials (the recorder may have masked them anyway).
SECRET_HEADERS = frozenset(
    {b"authorization", b"proxy-authorization", b"x-api-key", b"x-auth-token", b"set-cookie"}
)
#: Headers whose values are read for SQL injection and XSS (cookies: each value).
SCANNED_HEADERS = frozenset({b"user-agent", b"referer", b"x-forwarded-for", b"cookie"})

#: `..` between separators, in any mix of `/`, `\\` and their encodings (after decoding).
_TRAVERSAL = re.compile(r"(?:^|[/\\=])\.\.(?:[/\\]|$)")
#: Overlong UTF-8 and 16-bit encodings of `.` or `/` that survive one decoding.
_ENCODED_DOT = re.compile(r"%(?:c0%ae|c0%af|c1%9c|e0%80%ae|u002e|u2215)", re.IGNORECASE)
#: Files only an attacker asks a web application for.
_TARGETS = re.compile(
    r"(?:/etc/(?:passwd|shadow|hosts)|/proc/self/|boot\.ini|win\.ini|/windows/system32)",
    re.IGNORECASE,
)
#: User agents of well-known scanners and attack tools (word boundaries, any case).
SCANNERS = (
    "sqlmap",
    "nikto",
    "nmap",
    "masscan",
    "zgrab",
    "nuclei",
    "wpscan",
    "dirbuster",
    "gobuster",
    "dirsearch",
    "ffuf",
    "feroxbuster",
    "wfuzz",
    "acunetix",
    "nessus",
    "openvas",
    "w3af",
    "arachni",
    "skipfish",
    "whatweb",
    "commix",
    "xsstrike",
    "joomscan",
    "netsparker",
    "hydra",
    "zap",
)
_SCANNER = re.compile(r"\b(" + "|".join(SCANNERS) + r")\b", re.IGNORECASE)
#: Body content types read as text (anything else is skipped).
_TEXT_TYPES = ("text/", "application/xml", "application/xhtml")
#: JSON string values looked at in one body at most (a huge array is not walked whole).
_MAX_JSON_VALUES = 1000
#: Characters without which a value cannot be SQL injection or XSS: most values
#: have none, and skip both detectors.
_SUSPECT = re.compile(r"['\"`<>()=#;/*\\-]|\s(?:or|and|union|select)\s", re.IGNORECASE)
#: A location names where a value was (a parameter or JSON key): kept short and printable.
_NAME_CHARS = 80


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _decoded(raw: bytes) -> str:
    """`raw` percent-decoded twice (double encoding is a classic evasion)."""
    return _text(unquote_to_bytes(unquote_to_bytes(raw)))


def _name(name: str) -> str:
    return printable(name[:_NAME_CHARS])


class Signatures:
    """Runs the enabled detectors over one exchange."""

    def __init__(self, enabled: tuple[str, ...], max_body_bytes: int) -> None:
        self.enabled = frozenset(enabled)
        self.max_body_bytes = max_body_bytes
        self._values = bool(self.enabled & {"sql_injection", "xss"})

    def scan(
        self, event: HttpExchange, client: str, endpoint: str, source: Source | None = None
    ) -> list[Finding]:
        """One finding per detector that matched (the first place it matched)."""
        found: dict[str, tuple[str, str]] = {}  # kind -> (location, detector)
        path, _, query = event["path"].partition(b"?")
        headers = event["request"]["headers"]
        if "path_traversal" in self.enabled:
            hit = self._traversal(path, query)
            if hit is not None:
                found["path_traversal"] = hit
        if "scanner" in self.enabled:
            for name, value in _pairs(headers):
                if name == b"user-agent":
                    match = _SCANNER.search(_text(value))
                    if match:
                        found["scanner"] = ("header:user-agent", f"scanner:{match[1].lower()}")
                        break
        if self._values:
            for location, text in self._values_of(event, path, query, headers):
                self._inject(found, location, text)
                if found.keys() >= {"sql_injection", "xss"} & self.enabled:
                    break
        start = event["request_start_us"]
        end = event["request_end_us"] or start
        return [
            Finding(
                kind=kind,
                severity="warning" if kind == "scanner" else "critical",
                message=f"{kind.replace('_', ' ')} from client {client} on {endpoint} "
                f"({location}, {detector})",
                window_start_us=start,
                window_end_us=max(end, start + 1),
                client=client,
                endpoint=endpoint,
                count=1,
                location=location,
                detector=detector,
                exchange_ids=(event["id"],),
                source=source,
            )
            for kind, (location, detector) in found.items()
        ]

    # -- detectors ------------------------------------------------------------------

    def _traversal(self, path: bytes, query: bytes) -> tuple[str, str] | None:
        for location, raw in (("path", path), ("query", query)):
            if not raw:
                continue
            if _ENCODED_DOT.search(_text(raw)):
                return location, "traversal:encoded-dot"
            text = _decoded(raw)
            if _TRAVERSAL.search(text):
                return location, "traversal:dot-dot"
            if _TARGETS.search(text):
                return location, "traversal:target-file"
        return None

    def _inject(self, found: dict[str, tuple[str, str]], location: str, value: str) -> None:
        if not value or not _SUSPECT.search(value):
            return
        if "sql_injection" in self.enabled and "sql_injection" not in found:
            result = libinjection.is_sql_injection(value)
            if result["is_sqli"]:
                found["sql_injection"] = (location, f"libinjection-sqli:{result['fingerprint']}")
        if "xss" in self.enabled and "xss" not in found:
            if libinjection.is_xss(value)["is_xss"]:
                found["xss"] = (location, "libinjection-xss")

    def _values_of(
        self, event: HttpExchange, path: bytes, query: bytes, headers: list[bytes]
    ) -> Iterator[tuple[str, str]]:
        """(location, value) of everything the injection detectors read."""
        for segment in path.split(b"/"):
            if segment:
                yield "path", _decoded(segment)
        for param, value in parse_qsl(_text(query), keep_blank_values=True):
            yield f"query:{_name(param)}", param
            yield f"query:{_name(param)}", value
        for name, raw in _pairs(headers):
            if name in SECRET_HEADERS or name not in SCANNED_HEADERS:
                continue
            if name == b"cookie":
                for part in _text(raw).split(";"):
                    cookie, _, content = part.strip().partition("=")
                    yield f"header:cookie:{_name(cookie)}", _decoded(content.encode())
            else:
                yield f"header:{name.decode('latin-1')}", _decoded(raw)
        yield from self._body_values(event, headers)

    def _body_values(self, event: HttpExchange, headers: list[bytes]) -> Iterator[tuple[str, str]]:
        body = event["request"]["body"][: self.max_body_bytes]
        if not body:
            return
        kind = next((_text(v).lower() for n, v in _pairs(headers) if n == b"content-type"), "")
        if kind.startswith("application/x-www-form-urlencoded"):
            for name, value in parse_qsl(_text(body), keep_blank_values=True):
                yield f"body:{_name(name)}", name
                yield f"body:{_name(name)}", value
        elif "json" in kind:
            try:
                document = json.loads(body)
            except ValueError:
                yield "body", _text(body)
                return
            for where, value in _json_strings(document, "$"):
                yield f"body:{_name(where)}", value
        elif kind.startswith(_TEXT_TYPES):
            yield "body", _text(body)


def _pairs(headers: list[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """(lower-case name, value) of a flat header list."""
    for index in range(0, len(headers) - 1, 2):
        yield headers[index].lower(), headers[index + 1]


def _json_strings(document: object, where: str) -> Iterator[tuple[str, str]]:
    """(JSON path, string) of the string values (and keys) in `document`, breadth-limited."""
    stack: list[tuple[str, object]] = [(where, document)]
    seen = 0
    while stack and seen < _MAX_JSON_VALUES:
        at, node = stack.pop()
        if isinstance(node, str):
            seen += 1
            yield at, node
        elif isinstance(node, dict):
            for key, value in node.items():
                seen += 1
                yield f"{at}.{key}", str(key)
                stack.append((f"{at}.{key}", value))
        elif isinstance(node, list):
            stack.extend((f"{at}[{i}]", item) for i, item in enumerate(node))
