"""The transforms a replay applies, as frozen typed config (what the loader and CLI build).

`TransformOptions` is the one value `ReplayConfig.transforms` holds: the rewrite
rules (`Rule`, from `--transforms FILE` and `--set-header`/`--remove-header`),
the target map (`TargetMapping`), the credentials (`Credential`: OAuth2 client
credentials, JWT re-sign), the correlation rules (`Correlate`) and the Python
hook. It is plain data: parsing lives in `replayer.transforming.loader`, the
steps that act on it in `rules`, `targets`, `hook` (and `credentials`,
`jwtresign`, `correlation`). A configured string that may be a secret is a
`Value`: `${ENV}` already resolved, files named and re-read when applied
(`replayer.transforming.values`); its repr never shows the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from trafficmirror.plumbing.jsonpath import JsonPattern

#: The two requests a record may become: to the shadow, and with `--baseline` to the baseline.
Role = Literal["shadow", "baseline"]
ROLES: frozenset[Role] = frozenset(("shadow", "baseline"))


@dataclass(frozen=True)
class FileRef:
    """A part of a `Value` read from a file (`@/path` or `${file:/path}`), re-read on change."""

    path: str


@dataclass(frozen=True)
class Value:
    """A configured string: literal parts (environment variables already substituted)
    and file parts read when used. May be a secret: never shown (see `__repr__`)."""

    parts: tuple[str | FileRef, ...] = field(repr=False)

    @property
    def static(self) -> str | None:
        """The whole value when it reads no file, else None."""
        if all(isinstance(part, str) for part in self.parts):
            return "".join(part for part in self.parts if isinstance(part, str))
        return None

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(part.path for part in self.parts if isinstance(part, FileRef))

    def __repr__(self) -> str:
        return f"Value(<{len(self.parts)} parts, hidden>)"


@dataclass(frozen=True)
class Condition:
    """When a rule applies; every given part must hold (an empty condition always holds).

    `methods`: upper-case methods. `path`: a regular expression searched in the
    path without the query (a `path_glob` is compiled into one). `authorities`:
    (host, port) pairs as `targets.authority_key` makes them; port None matches
    any port. `roles`: which of the record's requests (shadow, baseline).
    """

    methods: frozenset[str] | None = None
    path: re.Pattern[str] | None = None
    authorities: tuple[tuple[str, int | None], ...] | None = None
    roles: frozenset[Role] = ROLES


# -- rewrite rules -------------------------------------------------------------------


@dataclass(frozen=True)
class SetHeader:
    """Replace every occurrence of header `name` with one `value`; add it if absent."""

    name: str
    value: Value


@dataclass(frozen=True)
class RemoveHeader:
    """Remove every occurrence of header `name`."""

    name: str


@dataclass(frozen=True)
class Replace:
    """`re.sub(pattern, replacement, ...)` in one part of the request.

    `where`: `path` (without the query), `query` (without the `?`), `header`
    (the values of header `name`), `body` (a text body: no Content-Encoding,
    valid UTF-8). `replacement` uses `re.sub`'s syntax (`\\1`, `\\g<name>`).
    """

    where: Literal["path", "query", "header", "body"]
    pattern: re.Pattern[str]
    replacement: str
    name: str | None = None  # the header, for where="header"


@dataclass(frozen=True)
class JsonSet:
    """Set the values at `path` in a JSON request body (a concrete path adds a missing key)."""

    path: JsonPattern
    value: Any


@dataclass(frozen=True)
class JsonDelete:
    """Delete the values at `path` in a JSON request body."""

    path: JsonPattern


Action = SetHeader | RemoveHeader | Replace | JsonSet | JsonDelete


@dataclass(frozen=True)
class Rule:
    """One named rewrite rule. `origin` says where it was defined (`file:line` or the flag)."""

    name: str
    action: Action
    when: Condition = field(default_factory=Condition)
    origin: str = ""


# -- target map ----------------------------------------------------------------------


@dataclass(frozen=True)
class TargetMapping:
    """Events recorded for `authority` go to `url` (`--target-map AUTHORITY=URL`).

    `host` is normalised (lower case, no trailing dot or brackets); `port` None
    means any port of that host (a key with a port matches that port only, the
    event's scheme filling in a default port).
    """

    authority: str
    host: str
    port: int | None
    url: str
    origin: str = ""


# -- credentials (built by replayer.transforming.credentials / jwtresign) ---------------


@dataclass(frozen=True)
class OAuth2ClientCredentials:
    """Fetch a token with the OAuth2 client-credentials grant and send it in `header`.

    `client_auth`: `basic` (HTTP Basic with id and secret, RFC 6749 2.3.1) or
    `form` (both in the form body). The header's value is `prefix` + the token.
    """

    token_url: str
    client_id: Value
    client_secret: Value
    scope: str | None = None
    audience: str | None = None
    header: str = "Authorization"
    prefix: str = "Bearer "
    client_auth: Literal["basic", "form"] = "basic"


@dataclass(frozen=True)
class JwtResign:
    """Re-sign the JWT found in `header` (after `prefix`) with the shadow's `key`.

    `algorithm`: HS256 (key: the secret), RS256 or ES256 (key: a PEM private key).
    `refresh_times`: move `iat`/`nbf`/`exp` to replay time, keeping their offsets.
    """

    algorithm: Literal["HS256", "RS256", "ES256"]
    key: Value
    header: str = "Authorization"
    prefix: str = "Bearer "
    refresh_times: bool = False


@dataclass(frozen=True)
class Credential:
    """One named credentials step of the `credentials:` section."""

    name: str
    kind: OAuth2ClientCredentials | JwtResign
    when: Condition = field(default_factory=Condition)
    origin: str = ""


# -- correlation (built by replayer.transforming.correlation) --------------------------


@dataclass(frozen=True)
class Correlate:
    """One named rule of the `correlate:` section: where a response holds an ID.

    Exactly one of `response_json` (a JSON path in the response body),
    `response_header` (a header name, lower case) and `response_regex` (a
    pattern with one group, searched in the text body) is set.
    """

    name: str
    response_json: JsonPattern | None = None
    response_header: str | None = None
    response_regex: re.Pattern[str] | None = None
    origin: str = ""


# -- all of it -----------------------------------------------------------------------


@dataclass(frozen=True)
class TransformOptions:
    """Everything a replay transforms (the CLI's transform options, `--transforms FILE`).

    Order of application, for each request: correlation (production IDs become
    the shadow's), the rewrite `rules` (the file's in file order, then
    `--set-header`/`--remove-header` in the order given), `credentials`, then
    the `hook`. `target_map` picks the target per recorded authority; the
    events of other authorities go to `--target` when it is given, else they
    are skipped as `unmapped-authority`. `source`: the file, for messages.
    """

    rules: tuple[Rule, ...] = ()
    target_map: tuple[TargetMapping, ...] = ()
    credentials: tuple[Credential, ...] = ()
    correlate: tuple[Correlate, ...] = ()
    hook: str | None = None
    source: str | None = None

    @property
    def enabled(self) -> bool:
        """True when any request may be changed (the target map alone changes none)."""
        return bool(self.rules or self.credentials or self.correlate or self.hook)
