"""Redaction of secrets before a recorded exchange leaves the recorder.

Runs inside `flow_to_event`, on the copy of the exchange that becomes the event,
before it is encoded or handed to Kafka: a secret that is redacted here is
never in the producer's queue, the topic, a replay, a result or a report. The
live request and response are never altered. Headers are redacted by name,
query parameters and form fields (urlencoded and multipart) by name
(`recorder.params`), values in JSON bodies by JSON path
(`trafficmirror.plumbing.jsonpath`); each
rule drops, masks or HMACs what it matches (`Redactor`), and every event lists
what was applied to it in its `recorder.redactions`. A header may instead keep
a JWT's header and claims with its signature destroyed (`jwt-claims`), so the
replayer can re-sign the same claims with the shadow's key. The rules as the
user writes them (specs, defaults, the HMAC key) are read in `recorder.redactrules`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from recorder import content, jwtclaims, params
from recorder.params import quick_filter
from recorder.redactrules import KEY_ENV, JsonRule, parse_rules
from trafficmirror.plumbing.errors import ConfigError
from trafficmirror.plumbing.jsonpath import Segment

MASK = "***"
HMAC_PREFIX = "hmac-sha256:"
#: Hex digits of the HMAC kept: 128 bits, plenty to keep distinct values distinct.
HMAC_DIGITS = 32


class Redactor:
    """Applies header and JSON body rules to the parts of one exchange.

    Headers (request, response, trailers) match by name, case-insensitively;
    by default Authorization, Proxy-Authorization, Cookie, Set-Cookie and
    X-Api-Key are masked, and `NAME=MODE` adds a name or changes its mode.
    JSON values match by path pattern: `$.password`, `$.users[*].token`,
    `$..secret` (`*` any one key or index, `..` any depth). Modes: `drop`
    (the header, or the JSON key or array element, is removed), `mask` (the
    value becomes `***`), `hmac` (`hmac-sha256:` and the first 32 hex digits
    of HMAC-SHA256(key, value), with the user's key of 16+ bytes: equal values
    stay equal, so comparisons and joins still work; a JSON string is keyed by
    its UTF-8 text, any other value by its compact JSON), and for headers only
    `jwt-claims` (`Bearer <header>.<claims>.`: a JWT without its signature, see
    `jwt_claims`; a value that is not a JWT is masked and noted as mask).
    Query parameters and form fields (urlencoded and multipart bodies of
    requests and responses) match by name (`recorder.params`); the usual
    secret names (`redactrules.DEFAULT_PARAMS`) are masked by default, and a
    parameter rule `NAME=MODE` (mask, drop, hmac) adds a name or changes its
    mode. Notes, once per rule and event: `request.header:authorization=mask`,
    `request.query:api_key=mask`, `request.form:password=mask`,
    `request.body:$.password=drop`, `request.body=drop` (the whole body).
    """

    def __init__(
        self,
        headers: Mapping[str, str] | None = None,
        json_rules: Sequence[JsonRule] = (),
        key: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> None:
        self.headers = {
            name.lower().encode("latin-1"): mode for name, mode in (headers or {}).items()
        }
        self.json_rules = tuple(json_rules)
        #: Query parameter and form field rules: lower-case name -> mode.
        self.params = {name.lower(): mode for name, mode in (params or {}).items()}
        self._quick_params = quick_filter(self.params)
        self._key = key
        needs_key = [n.decode() for n, m in self.headers.items() if m == "hmac"]
        needs_key += [n for n, m in self.params.items() if m == "hmac"]
        needs_key += [r.text for r in self.json_rules if r.mode == "hmac"]
        if needs_key and key is None:
            raise ConfigError(
                f"hmac redaction of {', '.join(needs_key)} needs a key: "
                f"--redact-key-file or ${KEY_ENV}"
            )

    @classmethod
    def from_options(
        cls,
        header_specs: Iterable[str] = (),
        json_specs: Iterable[str] = (),
        key_file: str | None = None,
        defaults: bool = True,
        environ: Mapping[str, str] | None = None,
        param_specs: Iterable[str] = (),
    ) -> Redactor:
        """Rules from CLI-style specs (`NAME[=MODE]`, `PATH[=MODE]`); raises `ConfigError`."""
        rules = parse_rules(header_specs, json_specs, key_file, defaults, environ, param_specs)
        return cls(rules.headers, rules.json_rules, rules.key, rules.params)

    @property
    def active(self) -> bool:
        return bool(self.headers or self.json_rules or self.params)

    def describe(self) -> list[str]:
        """The rules as `header:NAME=MODE` / `param:NAME=MODE` / `json:PATH=MODE`, for the log."""
        return (
            [f"header:{n.decode()}={m}" for n, m in self.headers.items()]
            + [f"param:{n}={m}" for n, m in self.params.items()]
            + [f"json:{r.text}={r.mode}" for r in self.json_rules]
        )

    # -- values ---------------------------------------------------------------

    def digest(self, value: bytes) -> str:
        """`hmac-sha256:<32 hex digits>` of `value` under the user's key."""
        if self._key is None:  # the constructor makes sure it is set when needed
            raise ConfigError("hmac redaction without a key")
        mac = hmac.new(self._key, value, hashlib.sha256).hexdigest()
        return HMAC_PREFIX + mac[:HMAC_DIGITS]

    def _header_value(self, mode: str, value: bytes) -> bytes:
        return MASK.encode() if mode == "mask" else self.digest(value).encode()

    def _field_value(self, mode: str, value: bytes) -> bytes:
        # A query or urlencoded value is keyed decoded, as the app reads it.
        return self._header_value(mode, params.field_value(value))

    def _part_value(self, mode: str, value: bytes) -> bytes:
        return self._header_value(mode, value)

    # -- query ----------------------------------------------------------------

    def redact_path(self, path: bytes, notes: list[str]) -> bytes:
        """The request target with the parameter rules applied to its query (`path` if none)."""
        if not self.params or b"?" not in path:
            return path
        applied: list[tuple[str, str]] = []
        redacted = params.redact_query(
            path, self.params, self._field_value, applied, self._quick_params
        )
        if applied:
            notes.extend(f"request.query:{name}={mode}" for name, mode in applied)
        return redacted

    #: The JWT of a header value with its signature emptied, or None (`recorder.jwtclaims`).
    jwt_claims = staticmethod(jwtclaims.jwt_claims)

    def _json_value(self, mode: str, value: Any) -> Any:
        if mode == "mask":
            return MASK
        if isinstance(value, str):
            return self.digest(value.encode("utf-8", "surrogatepass"))
        return self.digest(
            json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        )

    # -- headers --------------------------------------------------------------

    def redact_headers(
        self, fields: Iterable[tuple[bytes, bytes]], where: str, notes: list[str]
    ) -> list[bytes]:
        """Flat `[name, value, ...]` of `fields` with the header rules applied."""
        rules = self.headers
        out: list[bytes] = []
        for name, value in fields:
            mode = rules.get(name.lower()) if rules else None
            if mode is None:
                out.append(name)
                out.append(value)
                continue
            redacted: bytes | None = None
            if mode == "jwt-claims":
                redacted = self.jwt_claims(value)
                if redacted is None:
                    mode = "mask"  # not a JWT: nothing to keep
            note = f"{where}.header:{name.lower().decode('latin-1')}={mode}"
            if note not in notes:
                notes.append(note)
            if mode != "drop":
                out.append(name)
                out.append(redacted if redacted is not None else self._header_value(mode, value))
        return out

    # -- bodies ---------------------------------------------------------------

    def redact_body(
        self,
        raw: bytes,
        flat_headers: list[bytes],
        max_body_bytes: int,
        where: str,
        notes: list[str],
    ) -> bytes | None:
        """The body to record: `raw`, a redacted copy, or None to drop it (fail closed).

        A body is read as JSON when its Content-Type says JSON (`application/json`,
        `*+json`) or it starts with `{` or `[`; a Content-Encoding (gzip, deflate,
        br, zstd) is undone first and redone after. When a rule matched, the body
        is written back as compact JSON and the Content-Length value in
        `flat_headers` changes with it (the event stays self-consistent); when
        none matched, the bytes are kept as they were. With JSON rules set, a
        body that says it is JSON but cannot be decoded or parsed, or looks like
        JSON but is over `max_body_bytes` (recorded cut, unparsed), is dropped.
        """
        if not raw:
            return raw
        content_type, encoding = content.type_and_encoding(flat_headers)
        encoded = encoding not in (b"", b"identity")
        if self.params and content.media(content_type) in (params.FORM, params.MULTIPART):
            return self._redact_form(
                raw, flat_headers, content_type or b"", encoding, max_body_bytes, where, notes
            )
        if not self.json_rules:
            return raw
        declared_json = content.is_json_type(content_type)
        if not declared_json and not encoded and not content.looks_json(raw):
            return raw
        if len(raw) > max_body_bytes:
            # Cut, it could not be parsed, and the part kept may hold a secret.
            if declared_json or content.looks_json(raw):
                notes.append(f"{where}.body=drop")
                return None
            return raw
        plain = raw
        if encoded:
            try:
                plain = content.decode(raw, encoding.decode("latin-1"))
            except Exception:
                if declared_json:
                    notes.append(f"{where}.body=drop")
                    return None
                return raw
            if not declared_json and not content.looks_json(plain):
                return raw
        try:
            document = json.loads(plain)
        except (ValueError, RecursionError):
            if declared_json:
                notes.append(f"{where}.body=drop")
                return None
            return raw
        applied: list[str] = []
        try:
            document = self._walk(document, [], applied)
        except RecursionError:
            notes.append(f"{where}.body=drop")
            return None
        if not applied:
            return raw
        for rule_text in applied:
            notes.append(f"{where}.body:{rule_text}")
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8", "surrogatepass"
        )
        if encoded:
            body = content.encode(body, encoding.decode("latin-1"))
        content.set_length(flat_headers, len(body))
        return body

    def _redact_form(
        self,
        raw: bytes,
        flat_headers: list[bytes],
        content_type: bytes,
        encoding: bytes,
        max_body_bytes: int,
        where: str,
        notes: list[str],
    ) -> bytes | None:
        """An urlencoded or multipart body with the parameter rules applied (None: dropped).

        A body cut at the cap is redacted as far as it was kept; one that
        cannot be read (an encoding that does not decode, a multipart type
        without a boundary) is dropped, since it may hold a secret.
        """
        cut = len(raw) > max_body_bytes
        encoded = encoding not in (b"", b"identity")
        plain = raw
        if encoded:
            try:
                if cut:
                    raise ValueError("cut")
                plain = content.decode(raw, encoding.decode("latin-1"))
            except Exception:
                notes.append(f"{where}.body=drop")
                return None
        applied: list[tuple[str, str]] = []
        if content.media(content_type) == params.FORM:
            body = params.redact_pairs(plain, self.params, self._field_value, applied)
        else:
            token = params.boundary(content_type)
            if token is None:
                notes.append(f"{where}.body=drop")
                return None
            body = params.redact_multipart(plain, token, self.params, self._part_value, applied)
        if body is plain:
            return raw
        notes.extend(f"{where}.form:{name}={mode}" for name, mode in applied)
        if encoded:
            body = content.encode(body, encoding.decode("latin-1"))
        if not cut:
            content.set_length(flat_headers, len(body))
        return body

    def _walk(self, value: Any, path: list[Segment], applied: list[str]) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, child in value.items():
                path.append(key)
                rule = self._rule(path)
                if rule is None:
                    out[key] = self._walk(child, path, applied)
                else:
                    _note(applied, rule)
                    if rule.mode != "drop":
                        out[key] = self._json_value(rule.mode, child)
                path.pop()
            return out
        if isinstance(value, list):
            items: list[Any] = []
            for index, child in enumerate(value):
                path.append(index)
                rule = self._rule(path)
                if rule is None:
                    items.append(self._walk(child, path, applied))
                else:
                    _note(applied, rule)
                    if rule.mode != "drop":
                        items.append(self._json_value(rule.mode, child))
                path.pop()
            return items
        return value

    def _rule(self, path: Sequence[Segment]) -> JsonRule | None:
        for rule in self.json_rules:
            if rule.matches(path):
                return rule
        return None


def _note(applied: list[str], rule: JsonRule) -> None:
    text = f"{rule.text}={rule.mode}"
    if text not in applied:
        applied.append(text)
