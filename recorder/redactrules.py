"""The redaction rules as the user writes them: specs parsed, checked, the HMAC key read.

`--redact-header NAME[=MODE]`, `--redact-param NAME[=MODE]` and `--redact-json
PATH[=MODE]` (mitmproxy options `trafficmirror_redact_*`) become one
`RedactionRules`: the default headers and parameters (unless turned off),
each spec's target and mode (`drop`, `mask`, `hmac`, and `jwt-claims` for
headers only), the JSON path rules (a later rule for the same path wins) and
the HMAC key from `--redact-key-file` or `$TRAFFICMIRROR_REDACT_KEY`. A bad
spec is a `ConfigError` of one line, before the recorder starts.
`recorder.redact` applies the rules to each exchange.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from recorder import params
from trafficmirror.plumbing.errors import ConfigError
from trafficmirror.plumbing.jsonpath import JsonPattern, Segment

MODES = ("drop", "mask", "hmac", "jwt-claims")
#: Modes that only make sense for a header value.
HEADER_ONLY_MODES = ("jwt-claims",)
#: Headers redacted unless the user turns the default list off.
DEFAULT_HEADERS = ("authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key")
#: Query parameters and form fields redacted unless the user turns the defaults off.
DEFAULT_PARAMS = params.DEFAULT_PARAMS
DEFAULT_MODE = "mask"
MIN_KEY_BYTES = 16
#: Environment variable holding the HMAC key itself (the key file wins).
KEY_ENV = "TRAFFICMIRROR_REDACT_KEY"

_HEADER_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class JsonRule:
    """One JSON path pattern and what to do with the values it matches."""

    text: str
    pattern: JsonPattern
    mode: str

    def matches(self, path: Sequence[Segment]) -> bool:
        return self.pattern.matches(path)


def parse_spec(spec: str, what: str) -> tuple[str, str]:
    """`TARGET` or `TARGET=MODE` → (target, mode); the mode defaults to mask."""
    target, sep, mode = spec.rpartition("=")
    if not sep:
        return spec.strip(), DEFAULT_MODE
    mode = mode.strip().lower()
    if mode not in MODES:
        raise ConfigError(
            f"bad {what} redaction {spec!r}: unknown mode {mode!r} "
            "(use drop, mask, hmac or, for a header, jwt-claims)"
        )
    if mode in HEADER_ONLY_MODES and what != "header":
        raise ConfigError(f"bad {what} redaction {spec!r}: {mode} applies to headers only")
    return target.strip(), mode


def parse_json_rule(spec: str) -> JsonRule:
    """`$.card.number=hmac` → a `JsonRule`; raises `ConfigError`."""
    text, mode = parse_spec(spec, "JSON")
    pattern = JsonPattern.parse(text)
    if not pattern.tokens:
        raise ConfigError(f"bad JSON path {text!r}: it names the whole body (use a path below $)")
    return JsonRule(text, pattern, mode)


def read_key(key_file: str | None, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The HMAC key: the key file (less a trailing newline), else $TRAFFICMIRROR_REDACT_KEY."""
    if key_file:
        try:
            key = Path(key_file).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read redaction key file {key_file}: {exc.strerror}"
            ) from None
        key = key.rstrip(b"\r\n")
        origin = f"redaction key file {key_file}"
    else:
        value = (os.environ if environ is None else environ).get(KEY_ENV, "")
        if not value:
            return None
        key, origin = value.encode(), KEY_ENV
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"{origin} holds {len(key)} bytes; an HMAC key needs {MIN_KEY_BYTES}+")
    return key


@dataclass(frozen=True)
class RedactionRules:
    """What to redact: header and parameter names (lower case) to modes, JSON rules, key."""

    headers: dict[str, str]
    json_rules: tuple[JsonRule, ...]
    key: bytes | None
    params: dict[str, str]


def parse_rules(
    header_specs: Iterable[str] = (),
    json_specs: Iterable[str] = (),
    key_file: str | None = None,
    defaults: bool = True,
    environ: Mapping[str, str] | None = None,
    param_specs: Iterable[str] = (),
) -> RedactionRules:
    """The rules of CLI-style specs (`NAME[=MODE]`, `PATH[=MODE]`); raises `ConfigError`."""
    headers = dict.fromkeys(DEFAULT_HEADERS, DEFAULT_MODE) if defaults else {}
    fields = dict.fromkeys(DEFAULT_PARAMS, DEFAULT_MODE) if defaults else {}
    for spec in param_specs:
        name, mode = parse_spec(spec, "parameter")
        if not name or "&" in name:
            raise ConfigError(f"bad parameter redaction {spec!r}: {name!r} is not a field name")
        fields[name.lower()] = mode
    for spec in header_specs:
        name, mode = parse_spec(spec, "header")
        if not _HEADER_RE.fullmatch(name):
            raise ConfigError(f"bad header redaction {spec!r}: {name!r} is not a header name")
        headers[name.lower()] = mode
    rules: dict[str, JsonRule] = {}
    for spec in json_specs:
        rule = parse_json_rule(spec)
        rules[rule.text] = rule  # a later rule for the same path wins
    return RedactionRules(headers, tuple(rules.values()), read_key(key_file, environ), fields)
