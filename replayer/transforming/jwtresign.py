"""JWT re-sign: the shadow sees the recorded user, in a token signed with its own key.

The recorder's `jwt-claims` redaction keeps a JWT's header and claims and
empties its signature (`Bearer h.c.`); a token recorded unredacted works as
well. `JwtResigner` takes the token from the configured header (after its
prefix), signs the same claims with the shadow's key (HS256: a secret,
RS256/ES256: a PEM private key; `${ENV}` or `@file`, re-read when the file
changes) with PyJWT, and optionally moves `iat`/`nbf`/`exp` to replay time,
keeping their distance to the recorded request. The recorded header's `typ`
and other fields stay; `alg` becomes the shadow's and the fields that name
production's key (`kid`, `jku`, `jwk`, `x5*`) go. Signed tokens are kept in an
LRU bounded by count, so the same claims are signed once; with moved times a
cached token is reused only while its moved `nbf`/`exp` hold with a margin and
the move drifted little, both bounded by a fraction of the token's lifetime (a
3 s token is not reused once expired). A value that is not a JWT (a masked
`***`, an API key) is left as it is, counted and logged once: the shadow
answers it as it would, and the comparison shows it.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from replayer.models import OutgoingRequest
from replayer.transforming.config import Credential, JwtResign
from replayer.transforming.rules import Draft
from replayer.transforming.step import TransformContext
from replayer.transforming.tally import Tally
from replayer.transforming.values import ValueReader
from trafficmirror.plumbing.errors import ConfigError

logger = logging.getLogger(__name__)

RESIGNED = Tally(
    "trafficmirror_replayer_jwt_resigned",
    "JWT re-sign: tokens signed with the shadow's key (signed), taken from the cache of "
    "signed tokens (cached), and header values that were not a JWT and went as recorded "
    "(not-jwt).",
    "outcome",
    {"signed": "signed", "cached": "cached", "not-jwt": "not_jwt"},
)

#: Signed tokens kept (the same claims are signed once).
CACHE_SIZE = 4096
#: With moved times, a cached token is reused while the move differs by at most this much,
#: and while its moved `exp` is at least this far ahead (both capped by `TIME_SLACK_FRACTION`).
TIME_SLACK_SECONDS = 30.0
#: ... and by this fraction of the token's lifetime (`exp - iat`, else `exp - nbf`).
TIME_SLACK_FRACTION = 0.1
#: Seconds between two looks for a rotated key (the file is stat-ed at most that often).
KEY_RECHECK_SECONDS = 1.0
#: HS256 secrets shorter than this are weak (RFC 7518 3.2); used all the same, with a warning.
MIN_HMAC_BYTES = 32
#: Header fields that name production's key; the shadow's token must not carry them.
_KEY_FIELDS = frozenset(("alg", "kid", "jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256"))
_TIME_CLAIMS = ("iat", "nbf", "exp")


@dataclass(frozen=True, slots=True)
class _Signed:
    """A cached re-signed header value and when it may be sent again (`clock` seconds)."""

    value: str
    #: The time shift the token was signed with, and how far a later shift may differ.
    shift: float
    slack: float
    #: The moved `nbf` (or -inf), and the moved `exp` less the margin (or +inf).
    valid_from: float
    reuse_until: float

    def usable(self, shift: float, now: float) -> bool:
        """Whether the token may go out at `now` for a request moved by `shift`."""
        return abs(self.shift - shift) <= self.slack and self.valid_from <= now < self.reuse_until


_FOREVER = _Signed("", 0.0, math.inf, -math.inf, math.inf)


@dataclass
class JwtCounts:
    """What re-signing did in this process (one role)."""

    signed: int = 0
    cached: int = 0
    not_jwt: int = 0


def load_key(algorithm: str, text: str, where: str) -> Any:
    """The signing key PyJWT takes for `algorithm`; raises `ConfigError` (never shows the key)."""
    if algorithm == "HS256":
        secret = text.encode()
        if not secret:
            raise ConfigError(f"{where}: the HS256 key is empty")
        return secret
    try:
        key = load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError) as exc:
        # The message names the problem (format, password), never the key's bytes.
        why = str(exc).split("\n", 1)[0][:120]
        raise ConfigError(
            f"{where}: the {algorithm} key is not a PEM private key ({why})"
        ) from None
    if algorithm == "RS256" and not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{where}: RS256 needs an RSA private key")
    if algorithm == "ES256" and not (
        isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    ):
        raise ConfigError(f"{where}: ES256 needs an EC P-256 private key")
    return key


class JwtResigner:
    """The re-sign step of one credential and role; see the module docstring."""

    def __init__(
        self,
        name: str,
        config: JwtResign,
        *,
        origin: str = "",
        clock: Callable[[], float] = time.time,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.name = name
        self.config = config
        self.where = f"credentials {name!r}" + (f" ({origin})" if origin else "")
        self.counts = JwtCounts()
        RESIGNED.track(self, self.counts)
        self._clock = clock
        self._cache_size = cache_size
        #: Recorded header value → the value with the token signed, and when it may be reused.
        self._cache: OrderedDict[str, _Signed] = OrderedDict()
        self._reader = ValueReader(config.key)
        self._header = config.header.lower()
        self._refresh = config.refresh_times
        self._prefix = config.prefix.lower()
        self._key_text = ""
        self._key: Any = None
        self._key_for(self._reader.get())  # a bad key fails at start, not mid-replay
        self._key_checked = time.monotonic()
        self._warned = False

    def _key_for(self, text: str) -> Any:
        if text != self._key_text or self._key is None:
            key = load_key(self.config.algorithm, text, self.where)
            if isinstance(key, bytes) and len(key) < MIN_HMAC_BYTES:
                logger.warning(
                    "%s: the HS256 key has %d bytes, fewer than the %d RFC 7518 asks for",
                    self.where,
                    len(key),
                    MIN_HMAC_BYTES,
                )
            self._key, self._key_text = key, text
            self._cache.clear()  # a rotated key: tokens signed with the old one are stale
        return self._key

    async def apply(self, request: OutgoingRequest, context: TransformContext) -> OutgoingRequest:
        """The request with each JWT in the header signed with the shadow's key."""
        draft = Draft(request)
        return draft.build(request) if self.edit(draft, context) else request

    def edit(self, draft: Draft, context: TransformContext) -> bool:
        """`apply` on a request being rewritten (the chain shares one with the rules)."""
        wanted = self._header
        names = draft.names
        count = names.count(wanted)
        if not count:
            return False
        headers = draft.headers
        if count == 1:  # the usual case: no walk over every header
            i = names.index(wanted)
            name, value = headers[i]
            cached = self._cache.get(value)
            if (
                cached is not None
                and not self._refresh
                and time.monotonic() - self._key_checked < KEY_RECHECK_SECONDS
            ):  # `_resign`'s cache hit without the call: signed for good, key not due a look
                self._cache.move_to_end(value)
                self.counts.cached += 1
                headers[i] = (name, cached.value)
                draft.changed = True
                return True
            signed = self._resign(value, context)
            if signed is None:
                return False
            headers[i] = (headers[i][0], signed)
            draft.changed = True
            return True
        changed = False
        for i, name in enumerate(names):
            if name != wanted:
                continue
            signed = self._resign(headers[i][1], context)
            if signed is not None:
                headers[i] = (headers[i][0], signed)
                changed = True
        if changed:
            draft.changed = True
        return changed

    async def aclose(self) -> None:
        """Nothing to release (the interface the stage calls on every step)."""

    def _resign(self, value: str, context: TransformContext) -> str | None:
        now = time.monotonic()
        if now - self._key_checked >= KEY_RECHECK_SECONDS:
            # The key file is looked at (and a new key taken) at most this often anyway.
            self._key_checked = now
            self._key_for(self._reader.get())
        key = self._key
        shift = wall = 0.0
        refresh = self._refresh
        if refresh:
            wall = self._clock()
            shift = wall - context.event["request_start_us"] / 1_000_000
        # Keyed by the recorded value: the same claims (and prefix) are signed once.
        # Without refresh_times a token is signed for good (`_FOREVER`): always usable.
        cached = self._cache.get(value)
        if cached is not None and (not refresh or cached.usable(shift, wall)):
            self._cache.move_to_end(value)
            self.counts.cached += 1
            return cached.value
        stripped = value.strip()
        prefix_length = len(self._prefix)
        if stripped[:prefix_length].lower() != self._prefix:
            self._not_jwt("the value does not start with the configured prefix")
            return None
        token = stripped[prefix_length:].strip()
        # `header.claims`: what is signed; the recorded signature (if any) does not matter.
        signed_part, dot, _ = token.rpartition(".")
        if (
            not dot
            or signed_part.count(".") != 1
            or signed_part[0] == "."
            or signed_part[-1] == "."
        ):
            self._not_jwt("the value is not a JWT (header.claims.signature)")
            return None
        signed = self._sign(token, key, shift)
        if signed is None:
            self._not_jwt("the header or claims of the JWT are not JSON objects")
            return None
        token, reuse = signed
        new_value = stripped[:prefix_length] + token
        self._cache[value] = _Signed(
            new_value, shift, reuse.slack, reuse.valid_from, reuse.reuse_until
        )
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        self.counts.signed += 1
        return new_value

    def _sign(self, token: str, key: Any, shift: float) -> tuple[str, _Signed] | None:
        """The token signed with `key` (times moved by `shift`), and its reuse bounds."""
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except (jwt.InvalidTokenError, ValueError):
            return None
        if not isinstance(claims, dict):
            return None
        reuse = _FOREVER
        if self.config.refresh_times:
            reuse = _moved(claims, shift)
        fields = {k: v for k, v in header.items() if k not in _KEY_FIELDS}
        with warnings.catch_warnings():
            # A short HS256 key was warned about once, when it was loaded.
            warnings.simplefilter("ignore")
            signed = jwt.encode(claims, key, algorithm=self.config.algorithm, headers=fields)
        return signed, reuse

    def _not_jwt(self, why: str) -> None:
        self.counts.not_jwt += 1
        if not self._warned:
            self._warned = True
            logger.warning(
                "%s: %s; such values go as recorded (further ones are only counted)",
                self.where,
                why,
            )


def _stamp(claims: dict[str, Any], claim: str) -> float | None:
    stamp = claims.get(claim)
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        return float(stamp)
    return None


def _moved(claims: dict[str, Any], shift: float) -> _Signed:
    """Move `claims`' times by `shift` (in place); the bounds of reusing the token.

    `iat`/`nbf` are rounded down and `exp` up, so the moved token is valid at
    least over the recorded window (never issued in the future). A reused token
    must still be valid when sent: after its moved `nbf`, and before its moved
    `exp` less a margin; the margin and the drift of the move allowed are both
    `TIME_SLACK_SECONDS`, at most `TIME_SLACK_FRACTION` of the token's lifetime.
    """
    iat, nbf, exp = (_stamp(claims, claim) for claim in _TIME_CLAIMS)
    if iat is not None:
        claims["iat"] = math.floor(iat + shift)
    if nbf is not None:
        claims["nbf"] = math.floor(nbf + shift)
    if exp is not None:
        claims["exp"] = math.ceil(exp + shift)
    start = iat if iat is not None else nbf
    slack = TIME_SLACK_SECONDS
    if exp is not None and start is not None:
        slack = min(slack, max(0.0, exp - start) * TIME_SLACK_FRACTION)
    return _Signed(
        "",
        shift,
        slack,
        claims["nbf"] if nbf is not None else -math.inf,
        claims["exp"] - slack if exp is not None else math.inf,
    )


def build_jwt_resign(credential: Credential) -> JwtResigner:
    """The re-sign step of a `jwt_resign` credential; raises `ConfigError` for a bad key."""
    if not isinstance(credential.kind, JwtResign):
        raise TypeError("build_jwt_resign needs a jwt_resign credential")
    return JwtResigner(credential.name, credential.kind, origin=credential.origin)
