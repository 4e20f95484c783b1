"""Redaction rules applied while a flow becomes an event (no broker needed)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from mitmproxy.test import tflow, tutils

from recorder.event import flow_to_event, recorder_info
from recorder.redact import HMAC_PREFIX, MASK, Redactor
from recorder.redactrules import KEY_ENV, parse_json_rule, read_key
from schemas.codec import Codec
from trafficmirror.plumbing.errors import ConfigError

KEY = b"k" * 32
SECRET = "s3cr3t-Planted-value"


def flow(
    req_headers: list[tuple[bytes, bytes]],
    req_body: bytes = b"",
    resp_headers: list[tuple[bytes, bytes]] | None = None,
    resp_body: bytes = b"",
) -> Any:
    f = tflow.tflow(resp=True)
    f.request = tutils.treq(headers=tuple(req_headers), content=req_body)
    f.response = tutils.tresp(headers=tuple(resp_headers or []), content=resp_body)
    return f


def pairs(flat: list[bytes]) -> list[tuple[bytes, bytes]]:
    return list(zip(flat[::2], flat[1::2], strict=True))


def event_of(f: Any, redactor: Redactor, max_body: int = 1 << 20) -> dict[str, Any]:
    event = flow_to_event(f, max_body, recorder_info("t"), redactor)
    Codec().encode(event)  # still a valid event
    return event


def test_default_headers_are_masked_in_requests_and_responses() -> None:
    f = flow(
        [
            (b"Authorization", b"Bearer " + SECRET.encode()),
            (b"Cookie", b"sid=" + SECRET.encode()),
            (b"X-API-Key", SECRET.encode()),
            (b"Proxy-Authorization", b"Basic " + SECRET.encode()),
            (b"Accept", b"*/*"),
        ],
        resp_headers=[(b"Set-Cookie", b"sid=" + SECRET.encode()), (b"X-Other", b"1")],
    )
    event = event_of(f, Redactor.from_options())
    assert pairs(event["request"]["headers"]) == [
        (b"Authorization", MASK.encode()),
        (b"Cookie", MASK.encode()),
        (b"X-API-Key", MASK.encode()),
        (b"Proxy-Authorization", MASK.encode()),
        (b"Accept", b"*/*"),
    ]
    assert pairs(event["response"]["message"]["headers"]) == [
        (b"Set-Cookie", MASK.encode()),
        (b"X-Other", b"1"),
    ]
    assert event["recorder"]["redactions"] == [
        "request.header:authorization=mask",
        "request.header:cookie=mask",
        "request.header:x-api-key=mask",
        "request.header:proxy-authorization=mask",
        "response.header:set-cookie=mask",
    ]
    # The live flow is untouched.
    assert f.request.headers["Authorization"] == "Bearer " + SECRET


def test_nothing_listed_when_nothing_was_redacted() -> None:
    shared = recorder_info("t")
    event = flow_to_event(flow([(b"Accept", b"*/*")]), 1 << 20, shared, Redactor.from_options())
    assert event["recorder"] is shared and shared["redactions"] == []


def test_user_headers_modes_and_defaults_off() -> None:
    redactor = Redactor.from_options(
        ["x-secret=drop", "Authorization=hmac", "X-Token"],
        key_file=None,
        environ={KEY_ENV: "x" * 16},
    )
    f = flow(
        [
            (b"X-Secret", b"a"),
            (b"x-secret", b"b"),
            (b"Authorization", SECRET.encode()),
            (b"X-Token", b"t"),
            (b"Cookie", b"c"),
        ]
    )
    event = event_of(f, redactor)
    headers = pairs(event["request"]["headers"])
    assert [n for n, _ in headers] == [b"Authorization", b"X-Token", b"Cookie"]
    assert headers[0][1].startswith(HMAC_PREFIX.encode()) and len(headers[0][1]) == 12 + 32
    assert headers[1][1] == MASK.encode() and headers[2][1] == MASK.encode()
    assert "request.header:x-secret=drop" in event["recorder"]["redactions"]

    off = Redactor.from_options(["X-Token"], defaults=False)
    event = event_of(flow([(b"Cookie", b"c"), (b"X-Token", b"t")]), off)
    assert pairs(event["request"]["headers"]) == [(b"Cookie", b"c"), (b"X-Token", MASK.encode())]


def test_hmac_is_stable_keyed_and_not_the_value() -> None:
    a = Redactor.from_options(["Authorization=hmac"], environ={KEY_ENV: "a" * 16})
    b = Redactor.from_options(["Authorization=hmac"], environ={KEY_ENV: "b" * 16})
    assert a.digest(b"v1") == a.digest(b"v1") != a.digest(b"v2")
    assert a.digest(b"v1") != b.digest(b"v1")
    assert b"v1" not in a.digest(b"v1").encode()


def test_json_paths_in_request_and_response_bodies() -> None:
    body = {
        "user": "ann",
        "password": SECRET,
        "card": {"number": "4111111111111111", "exp": "12/30"},
        "items": [{"token": SECRET, "n": 1}, {"token": "other", "n": 2}],
        "deep": {"x": {"secret": 42}},
    }
    raw = json.dumps(body, indent=2).encode()
    redactor = Redactor.from_options(
        json_specs=["$.password", "$.card.number=hmac", "$.items[*].token=drop", "$..secret"],
        environ={KEY_ENV: "k" * 16},
    )
    f = flow(
        [(b"Content-Type", b"application/json"), (b"Content-Length", str(len(raw)).encode())],
        raw,
        [(b"Content-Type", b"application/vnd.api+json")],
        json.dumps({"token": SECRET, "password": SECRET}).encode(),
    )
    event = event_of(f, redactor)
    req = event["request"]
    got = json.loads(req["body"])
    assert got["password"] == MASK
    assert got["card"]["number"].startswith(HMAC_PREFIX) and got["card"]["exp"] == "12/30"
    assert got["items"] == [{"n": 1}, {"n": 2}]
    assert got["deep"] == {"x": {"secret": MASK}}
    # The event describes the body it holds.
    assert req["body_length"] == len(req["body"]) and not req["body_truncated"]
    assert dict(pairs(req["headers"]))[b"Content-Length"] == str(len(req["body"])).encode()
    resp = json.loads(event["response"]["message"]["body"])
    assert resp == {"token": SECRET, "password": MASK}
    assert event["recorder"]["redactions"] == [
        "request.body:$.password=mask",
        "request.body:$.card.number=hmac",
        "request.body:$.items[*].token=drop",
        "request.body:$..secret=mask",
        "response.body:$.password=mask",
    ]
    assert SECRET.encode() not in req["body"]
    # Live request intact.
    assert f.request.content == raw


def test_json_body_kept_byte_for_byte_when_no_rule_matches() -> None:
    raw = b'{ "a" : 1,\n "b": [1, 2] }'
    f = flow([(b"Content-Type", b"application/json")], raw)
    event = event_of(f, Redactor.from_options(json_specs=["$.password"]))
    assert event["request"]["body"] == raw


def test_gzip_json_is_decoded_redacted_and_encoded_again() -> None:
    raw = gzip.compress(json.dumps({"password": SECRET, "a": 1}).encode())
    f = flow([(b"Content-Type", b"application/json"), (b"Content-Encoding", b"gzip")], raw)
    event = event_of(f, Redactor.from_options(json_specs=["$.password"]))
    body = event["request"]["body"]
    assert json.loads(gzip.decompress(body)) == {"password": MASK, "a": 1}


def test_json_detected_without_content_type_and_other_bodies_left_alone() -> None:
    redactor = Redactor.from_options(json_specs=["$.password=drop"])
    event = event_of(flow([], b' {"password": "x", "k": 1}'), redactor)
    assert json.loads(event["request"]["body"]) == {"k": 1}
    form = b"password=" + SECRET.encode()
    # Not JSON: JSON rules do not apply (the default form field rules do, see test_params).
    json_only = Redactor.from_options(json_specs=["$.password=drop"], defaults=False)
    form_type = [(b"Content-Type", b"application/x-www-form-urlencoded")]
    assert event_of(flow(form_type, form), json_only)["request"]["body"] == form
    assert event_of(flow(form_type, form), redactor)["request"]["body"] == b"password=***"


@pytest.mark.parametrize(
    ("headers", "body", "max_body"),
    [
        ([(b"Content-Type", b"application/json")], b'{"password": "' + SECRET.encode(), 1 << 20),
        (
            [(b"Content-Type", b"application/json"), (b"Content-Encoding", b"gzip")],
            b"nogz",
            1 << 20,
        ),
        ([(b"Content-Type", b"text/plain")], b'{"password": "' + SECRET.encode() + b'"}', 10),
    ],
    ids=["unparsable", "bad-gzip", "too-large-to-parse"],
)
def test_json_bodies_that_cannot_be_checked_are_dropped(
    headers: list[tuple[bytes, bytes]], body: bytes, max_body: int
) -> None:
    event = event_of(
        flow(headers, body), Redactor.from_options(json_specs=["$.password"]), max_body
    )
    req = event["request"]
    assert (req["body"], req["body_truncated"], req["body_length"]) == (b"", True, len(body))
    assert event["recorder"]["redactions"] == ["request.body=drop"]


def test_bad_rules_are_config_errors(tmp_path: Path) -> None:
    for kwargs in (
        {"header_specs": ["Authorization=scramble"]},
        {"header_specs": ["bad name"]},
        {"json_specs": ["password"]},
        {"json_specs": ["$"]},
        {"json_specs": ["$.a[x]"]},
        {"json_specs": ["$.a=hmac"]},  # no key
    ):
        with pytest.raises(ConfigError):
            Redactor.from_options(**kwargs, environ={})  # type: ignore[arg-type]
    short = tmp_path / "short"
    short.write_bytes(b"tooshort\n")
    with pytest.raises(ConfigError, match="16"):
        read_key(str(short))
    with pytest.raises(ConfigError, match="cannot read"):
        read_key(str(tmp_path / "missing"))
    good = tmp_path / "key"
    good.write_bytes(KEY + b"\n")
    assert read_key(str(good), {KEY_ENV: "ignored-because-file-wins"}) == KEY


def test_json_rule_syntax() -> None:
    rule = parse_json_rule('$.a["b c"][2].*=drop')
    assert rule.mode == "drop" and rule.matches(["a", "b c", 2, "z"])
    assert not rule.matches(["a", "b c", 3, "z"])
    assert parse_json_rule("$..x").matches(["p", 0, "x"])


# -- jwt-claims -----------------------------------------------------------------------


def _b64(data: bytes) -> bytes:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=")


def make_jwt(claims: dict[str, Any], alg: str = "HS256", signature: bytes = b"") -> bytes:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": "prod-1"}).encode())
    body = _b64(json.dumps(claims).encode())
    return header + b"." + body + b"." + _b64(signature or SECRET.encode())


def test_jwt_claims_keeps_header_and_claims_and_destroys_the_signature() -> None:
    import jwt as pyjwt

    key = SECRET * 2  # 32+ bytes, as PyJWT wants for HS256
    signed = pyjwt.encode({"sub": "alice", "exp": 4102444800}, key, algorithm="HS256").encode()
    signature = signed.rsplit(b".", 1)[1]
    f = flow(
        [(b"Authorization", b"Bearer " + signed), (b"X-Id-Token", signed)],
        resp_headers=[(b"X-Refresh", b"bearer  " + signed)],
    )
    redactor = Redactor.from_options(
        ["Authorization=jwt-claims", "X-Id-Token=jwt-claims", "X-Refresh=jwt-claims"]
    )
    event = event_of(f, redactor)
    header, claims, _ = signed.split(b".")
    assert pairs(event["request"]["headers"]) == [
        (b"Authorization", b"Bearer " + header + b"." + claims + b"."),
        (b"X-Id-Token", header + b"." + claims + b"."),
    ]
    assert pairs(event["response"]["message"]["headers"]) == [
        (b"X-Refresh", b"bearer " + header + b"." + claims + b"."),
    ]
    stored = b"".join(event["request"]["headers"] + event["response"]["message"]["headers"])
    assert signature not in stored
    # What is kept is still a JWT to a reader that does not check signatures ...
    kept = event["request"]["headers"][3].decode()
    assert pyjwt.decode(kept, options={"verify_signature": False})["sub"] == "alice"
    # ... and worth nothing to one that does.
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(kept, key, algorithms=["HS256"])
    assert event["recorder"]["redactions"] == [
        "request.header:authorization=jwt-claims",
        "request.header:x-id-token=jwt-claims",
        "response.header:x-refresh=jwt-claims",
    ]


@pytest.mark.parametrize(
    "value",
    [
        b"Bearer opaque-" + SECRET.encode(),  # an opaque token
        b"Basic " + SECRET.encode(),
        b"Bearer a.b.c",  # three segments that are not base64 JSON
        b"Bearer " + _b64(b'{"typ":"JWT"}') + b"." + _b64(b'{"sub":"x"}') + b".sig",  # no alg
        b"Bearer " + _b64(b'{"alg":"HS256"}') + b"." + _b64(SECRET.encode()) + b".sig",  # not JSON
        b"Bearer " + make_jwt({"sub": "x"}) + b".extra.segments",  # a JWE has five
        b"Bearer " + make_jwt({"pad": "x" * 20000}),  # longer than any real token
        b"",
    ],
)
def test_jwt_claims_masks_what_is_not_a_jwt(value: bytes) -> None:
    event = event_of(
        flow([(b"Authorization", value)]), Redactor.from_options(["Authorization=jwt-claims"])
    )
    assert pairs(event["request"]["headers"]) == [(b"Authorization", MASK.encode())]
    assert event["recorder"]["redactions"] == ["request.header:authorization=mask"]


def test_jwt_claims_is_for_headers_only() -> None:
    with pytest.raises(ConfigError, match="headers only"):
        Redactor.from_options(json_specs=["$.token=jwt-claims"])
    assert Redactor.from_options(["Authorization=JWT-Claims"]).headers[b"authorization"] == (
        "jwt-claims"
    )
