"""A JWT kept without its signature: the `jwt-claims` redaction mode of a header.

The claims of a token often matter to a replay (who, which tenant, which
scopes) while the signature must never be stored: with it, the recorded token
could be presented to production. `jwt_claims` keeps a JWS's header and claims
byte for byte and empties the signature, so the replayer can re-sign the same
claims with the shadow's key (`replayer/transforming`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

#: A JWT longer than this is not parsed (masked instead): no real token comes close.
MAX_JWT_BYTES = 16 * 1024
#: `[scheme SP] header.claims.signature`, each segment base64url without padding.
JWT_RE = re.compile(
    rb"(?:(?P<scheme>[A-Za-z][A-Za-z0-9._~+-]*) +)?"
    rb"(?P<header>[A-Za-z0-9_-]+)\.(?P<claims>[A-Za-z0-9_-]+)\.[A-Za-z0-9_-]*"
)


def jwt_claims(value: bytes) -> bytes | None:
    """`[scheme ]header.claims.` of a JWT-bearing value (signature gone), or None.

    The value must be a JWS in compact form, optionally after an auth scheme
    (`Bearer `): three base64url segments whose first decodes to a JSON
    object naming an `alg` and whose second decodes to a JSON object (the
    claims). The signature segment is emptied, so what is stored cannot be
    presented to any service that checks signatures; header and claims stay
    byte for byte. Anything else (an opaque token, a JWE, a masked value)
    returns None and is masked by the caller.
    """
    if len(value) > MAX_JWT_BYTES:
        return None
    match = JWT_RE.fullmatch(value.strip())
    if match is None:
        return None
    scheme, header, claims = match.group("scheme", "header", "claims")
    parsed_header = b64json(header)
    if not isinstance(parsed_header, dict) or not isinstance(parsed_header.get("alg"), str):
        return None
    if not isinstance(b64json(claims), dict):
        return None
    prefix = scheme + b" " if scheme else b""
    return prefix + header + b"." + claims + b"."


def b64json(segment: bytes) -> Any:
    """The JSON value of one base64url JWT segment, or None."""
    try:
        raw = base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        return None
