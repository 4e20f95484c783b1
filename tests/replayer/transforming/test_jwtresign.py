"""JWT re-sign: the recorded claims, signed with the shadow's key (HS256, RS256, ES256)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any, cast

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from replayer.models import OutgoingRequest, Target
from replayer.transforming import jwtresign, values
from replayer.transforming.config import Credential, JwtResign, OAuth2ClientCredentials
from replayer.transforming.jwtresign import JwtResigner, build_jwt_resign
from replayer.transforming.step import TransformContext
from replayer.transforming.values import parse_value
from schemas.records import HttpExchange
from tests.replayer.events import make_event
from trafficmirror.plumbing.errors import ConfigError

T0 = 1_760_000_000  # the recorded request's time, in seconds
PROD_SECRET = "production-secret-0123456789abcdef"
SHADOW_SECRET = "shadow-secret-0123456789abcdefgh"
#: The claims' times are checked against the test's clock, not this machine's.
NO_TIMES = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}
CLAIMS = {"sub": "alice", "scope": "orders", "iat": T0 - 10, "nbf": T0 - 10, "exp": T0 + 290}


def recorded(claims: dict[str, Any] | None = None, strip: bool = True) -> str:
    """A production token as the recorder keeps it with jwt-claims (signature emptied)."""
    token = jwt.encode(claims or CLAIMS, PROD_SECRET, algorithm="HS256", headers={"kid": "prod-1"})
    return token.rsplit(".", 1)[0] + "." if strip else token


def pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def resigner(
    algorithm: str = "HS256", key: str = SHADOW_SECRET, now: float = T0 + 5, **kw: Any
) -> JwtResigner:
    config = JwtResign(algorithm, parse_value(key, "test"), **kw)  # type: ignore[arg-type]
    return JwtResigner("shop-jwt", config, clock=lambda: now)


def run(
    step: JwtResigner, headers: tuple[tuple[str, str], ...], start: float = T0
) -> OutgoingRequest:
    """`step` on a request with `headers` recorded at `start` (seconds)."""
    req = OutgoingRequest("GET", Target("http", "127.0.0.1:9"), "/", headers, b"", "ex")
    start_us = round(start * 1_000_000)
    context = TransformContext(
        key=b"k", event=cast(HttpExchange, make_event(request_start_us=start_us))
    )
    return asyncio.run(step.apply(req, context))


def sent_token(req: OutgoingRequest, name: str = "Authorization", prefix: str = "Bearer ") -> str:
    value = req.header(name)
    assert value is not None and value.startswith(prefix)
    return value[len(prefix) :]


def test_hs256_signs_the_recorded_claims_with_the_shadow_secret() -> None:
    step = resigner()
    req = run(step, (("Accept", "*/*"), ("Authorization", "Bearer " + recorded())))
    token = sent_token(req)
    claims = jwt.decode(token, SHADOW_SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == CLAIMS  # the same user, the same times (refresh_times is off)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "HS256", "typ": "JWT"}  # production's kid is gone
    assert req.headers[0] == ("Accept", "*/*")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, PROD_SECRET, algorithms=["HS256"], options={"verify_exp": False})
    # An unredacted production token is re-signed the same way.
    again = sent_token(
        run(
            step,
            (("authorization", "bearer " + recorded(strip=False)),),
        ),
        "authorization",
        "bearer ",
    )
    assert (
        jwt.decode(again, SHADOW_SECRET, algorithms=["HS256"], options={"verify_exp": False})
        == CLAIMS
    )


@pytest.mark.parametrize(
    ("algorithm", "private"),
    [
        ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("ES256", ec.generate_private_key(ec.SECP256R1())),
    ],
)
def test_rs256_and_es256_from_a_pem_file(algorithm: str, private: Any, tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text(pem(private))
    step = resigner(algorithm, f"@{path}")
    token = sent_token(run(step, (("Authorization", "Bearer " + recorded()),)))
    claims = jwt.decode(
        token, private.public_key(), algorithms=[algorithm], options={"verify_exp": False}
    )
    assert claims == CLAIMS
    assert jwt.get_unverified_header(token)["alg"] == algorithm


def test_refresh_times_moves_iat_nbf_exp_to_replay_time() -> None:
    day = 86_400
    step = resigner(now=T0 + day, refresh_times=True)
    token = sent_token(run(step, (("Authorization", "Bearer " + recorded()),)))
    claims = jwt.decode(token, SHADOW_SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (
        T0 + day - 10,
        T0 + day - 10,
        T0 + day + 290,
    )
    assert claims["sub"] == "alice"


def test_the_same_claims_are_signed_once_and_the_cache_is_bounded() -> None:
    now = [float(T0)]
    config = JwtResign("HS256", parse_value(SHADOW_SECRET, "t"), refresh_times=True)
    step = JwtResigner("shop-jwt", config, clock=lambda: now[0], cache_size=2)
    alice = ("Authorization", "Bearer " + recorded())
    first = run(step, (alice,))
    for _ in range(5):
        assert run(step, (alice,)).headers == first.headers
    now[0] += 20  # within the slack: the cached token is still good
    assert run(step, (alice,)).headers == first.headers
    assert (step.counts.signed, step.counts.cached) == (1, 6)
    now[0] += 60  # drifted further: signed again with the times moved
    moved = run(step, (alice,))
    assert moved.headers != first.headers and step.counts.signed == 2
    # Two other users push alice out of a cache of two.
    for user in ("bob", "carol"):
        run(step, (("Authorization", "Bearer " + recorded({**CLAIMS, "sub": user})),))
    run(step, (alice,))
    assert step.counts.signed == 5


def test_a_short_lived_token_is_not_reused_after_its_moved_exp() -> None:
    # A 3 s token on two requests recorded 0.1 s apart, replayed 4 s apart (a slow
    # shadow): the token cached for the first would have expired for the second.
    claims = {"sub": "alice", "iat": T0, "nbf": T0, "exp": T0 + 3}
    alice = ("Authorization", "Bearer " + recorded(claims))
    now = [T0 + 3600.7]
    config = JwtResign("HS256", parse_value(SHADOW_SECRET, "t"), refresh_times=True)
    step = JwtResigner("shop-jwt", config, clock=lambda: now[0])
    for start, later in ((T0 + 0.05, 0.0), (T0 + 0.1, 4.0), (T0 + 0.15, 0.2), (T0 + 0.2, 0.1)):
        now[0] += later
        token = sent_token(run(step, (alice,), start))
        # Valid when sent, as the shadow checks it (no leeway): iat/nbf not ahead, exp ahead.
        moved = jwt.decode(token, SHADOW_SECRET, algorithms=["HS256"], options=NO_TIMES)
        assert moved["iat"] <= now[0] and moved["nbf"] <= now[0] < moved["exp"] - 0.25
        assert moved["exp"] - moved["iat"] in (3, 4)  # the lifetime, rounded outwards
    # Re-signed after the 4 s gap; the next two drifted less than 0.3 s from it: reused.
    assert (step.counts.signed, step.counts.cached) == (2, 2)


def test_moved_times_never_round_into_the_future() -> None:
    # iat + shift = now - 0.15 with a fraction above .5: rounding to nearest made it
    # (and nbf) lie in the future, which a shadow without leeway refuses.
    step = resigner(now=T0 + 100.7, refresh_times=True)
    claims = {"sub": "alice", "iat": T0, "nbf": T0, "exp": T0 + 60}
    token = sent_token(run(step, (("Authorization", "Bearer " + recorded(claims)),), T0 + 0.15))
    moved = jwt.decode(token, SHADOW_SECRET, algorithms=["HS256"], options=NO_TIMES)
    assert (moved["iat"], moved["nbf"], moved["exp"]) == (T0 + 100, T0 + 100, T0 + 161)


def test_values_that_are_not_jwts_go_as_recorded(caplog: pytest.LogCaptureFixture) -> None:
    step = resigner()
    caplog.set_level(logging.WARNING)
    for value in ("***", "Bearer ***", "Bearer opaque-token", "Basic dXNlcjpwdw==", "Bearer a.b."):
        headers = (("Authorization", value),)
        req = OutgoingRequest("GET", Target("http", "h"), "/", headers, b"", "ex")
        context = TransformContext(key=b"k", event=cast(HttpExchange, make_event()))
        assert asyncio.run(step.apply(req, context)) is req
    assert step.counts.not_jwt == 5 and step.counts.signed == 0
    warned = [r for r in caplog.records if "go as recorded" in r.getMessage()]
    assert len(warned) == 1
    # No header at all: nothing to do, nothing counted.
    assert run(step, (("Accept", "*/*"),)).headers == (("Accept", "*/*"),)
    assert step.counts.not_jwt == 5


def test_other_header_and_prefix() -> None:
    step = resigner(header="X-Id-Token", prefix="")
    req = run(step, (("X-Id-Token", recorded()), ("Authorization", "Bearer " + recorded())))
    assert (
        jwt.decode(
            req.headers[0][1], SHADOW_SECRET, algorithms=["HS256"], options={"verify_exp": False}
        )
        == CLAIMS
    )
    assert req.headers[1] == ("Authorization", "Bearer " + recorded())


def test_bad_keys_are_one_line_errors_without_the_key(tmp_path: Path) -> None:
    rsa_pem = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    ec_pem = pem(ec.generate_private_key(ec.SECP384R1()))
    for algorithm, key, message in (
        ("RS256", "not a pem at all", "not a PEM private key"),
        ("RS256", ec_pem, "RS256 needs an RSA private key"),
        ("ES256", rsa_pem, "ES256 needs an EC P-256"),
        ("ES256", ec_pem, "ES256 needs an EC P-256"),
    ):
        with pytest.raises(ConfigError, match=message) as caught:
            resigner(algorithm, key)
        text = str(caught.value)
        assert "\n" not in text and "PRIVATE KEY" not in text and "credentials 'shop-jwt'" in text


def test_short_hs256_key_is_used_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    step = resigner(key="short")
    token = sent_token(run(step, (("Authorization", "Bearer " + recorded()),)))
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):
        assert jwt.decode(token, "short", algorithms=["HS256"], options={"verify_exp": False})
    assert any("fewer than the 32" in r.getMessage() for r in caplog.records)
    assert all("short" not in r.getMessage().split(":")[0] for r in caplog.records)


def test_a_rotated_key_file_is_used_and_the_cache_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(values, "RECHECK_SECONDS", 0.0)
    monkeypatch.setattr(jwtresign, "KEY_RECHECK_SECONDS", 0.0)
    path = tmp_path / "secret"
    path.write_text(SHADOW_SECRET + "\n")
    step = resigner(key=f"@{path}")
    headers = (("Authorization", "Bearer " + recorded()),)
    first = sent_token(run(step, headers))
    jwt.decode(first, SHADOW_SECRET, algorithms=["HS256"], options={"verify_exp": False})
    rotated = "rotated-secret-0123456789abcdefghij"
    path.write_text(rotated)
    os.utime(path, ns=(1, 1))  # a different mtime, however fast the test runs
    second = sent_token(run(step, headers))
    jwt.decode(second, rotated, algorithms=["HS256"], options={"verify_exp": False})
    assert step.counts.signed == 2


def test_build_jwt_resign() -> None:
    config = JwtResign("HS256", parse_value(SHADOW_SECRET, "t"))
    step = build_jwt_resign(Credential("shop-jwt", config, origin="t.yaml:3"))
    assert step.name == "shop-jwt" and "t.yaml:3" in step.where
    oauth = OAuth2ClientCredentials("http://x", parse_value("a", "t"), parse_value("b", "t"))
    with pytest.raises(TypeError):
        build_jwt_resign(Credential("x", oauth))
