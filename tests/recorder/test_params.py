"""Query strings and form bodies redacted by field name (`recorder.params`, via `Redactor`)."""

from __future__ import annotations

import gzip
from typing import Any

import pytest
from mitmproxy.test import tflow, tutils

from recorder import params
from recorder.capture import BodyCapture, CaptureBudget
from recorder.event import flow_to_event, recorder_info
from recorder.redact import HMAC_PREFIX, MASK, Redactor
from recorder.redactrules import DEFAULT_PARAMS
from schemas.codec import Codec
from trafficmirror.plumbing.errors import ConfigError

KEY = b"k" * 32
SECRET = b"s3cr3t-Planted-value"
RULES = {"api_key": "mask", "token": "drop", "sig": "hmac"}


def replace(mode: str, value: bytes) -> bytes:
    return b"<" + mode.encode() + b":" + value + b">"


def test_query_values_are_replaced_or_dropped_and_the_rest_kept_byte_for_byte() -> None:
    applied: list[tuple[str, str]] = []
    path = b"/a%20b?x=1&API%5Fkey=v1&token=t&y=%E2%82%AC&sig=zz&flag&empty="
    got = params.redact_query(path, RULES, replace, applied)
    assert got == b"/a%20b?x=1&API%5Fkey=<mask:v1>&y=%E2%82%AC&sig=<hmac:zz>&flag&empty="
    assert applied == [("api_key", "mask"), ("token", "drop"), ("sig", "hmac")]


@pytest.mark.parametrize(
    "path", [b"/plain", b"/p?", b"/p?x=1&y=2", b"/p?api_keyx=1&xapi_key=2", b"/p?api_key"]
)
def test_a_path_where_nothing_matched_is_the_same_object(path: bytes) -> None:
    applied: list[tuple[str, str]] = []
    assert params.redact_query(path, RULES, replace, applied) is path
    assert applied == []


def test_multipart_parts_by_name_and_cut_bodies() -> None:
    body = (
        b"preamble\r\n--XyZ\r\n"
        b'Content-Disposition: form-data; name="user"\r\n\r\nann\r\n'
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="API_KEY"\r\nContent-Type: text/plain\r\n\r\n'
        b"v1\r\nline2\r\n"
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="token"; filename="t.txt"\r\n\r\nTT\r\n'
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; filename="token"; name=note\r\n\r\nkeep\r\n'
        b"--XyZ--\r\n"
    )
    applied: list[tuple[str, str]] = []
    got = params.redact_multipart(body, b"XyZ", RULES, replace, applied)
    assert got == (
        b"preamble\r\n--XyZ\r\n"
        b'Content-Disposition: form-data; name="user"\r\n\r\nann\r\n'
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="API_KEY"\r\nContent-Type: text/plain\r\n\r\n'
        b"<mask:v1\r\nline2>\r\n"
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; filename="token"; name=note\r\n\r\nkeep\r\n'
        b"--XyZ--\r\n"
    )
    assert applied == [("api_key", "mask"), ("token", "drop")]
    # Cut inside the secret value, and inside the delimiter after it: still replaced.
    for end in (body.index(b"v1") + 1, body.index(b"line2") + 7):
        cut = body[:end]
        got = params.redact_multipart(cut, b"XyZ", RULES, replace, [])
        assert got.endswith(b">") and b"<mask:" in got and b"v1" not in got.replace(b"<mask:v", b"")
    untouched = body.replace(b"API_KEY", b"other").replace(b'"token"', b'"other2"')
    assert params.redact_multipart(untouched, b"XyZ", RULES, replace, []) is untouched


def test_boundary_and_field_name() -> None:
    assert params.boundary(b'multipart/form-data; boundary="a b"') == b"a b"
    assert params.boundary(b"multipart/form-data; charset=x; BOUNDARY=q1") == b"q1"
    assert params.boundary(b"multipart/form-data") is None
    assert params.field_name(b"X-Amz-Signature") == "x-amz-signature"
    assert params.field_name(b"api%5Fkey") == params.field_name(b"API_KEY") == "api_key"
    assert params.field_name(b"a+b") == "a b"


def flow(path: bytes, body: bytes = b"", content_type: bytes | None = None, **resp: Any) -> Any:
    headers = [(b"Content-Length", str(len(body)).encode())]
    if content_type is not None:
        headers.append((b"Content-Type", content_type))
    f = tflow.tflow(resp=True)
    f.request = tutils.treq(path=path, headers=tuple(headers), content=body)
    f.response = tutils.tresp(
        headers=tuple(resp.get("headers", [])), content=resp.get("content", b"")
    )
    return f


def event_of(f: Any, redactor: Redactor, max_body: int = 1 << 20) -> dict[str, Any]:
    event = flow_to_event(f, max_body, recorder_info("t"), redactor)
    encoded = Codec().encode(event).value
    assert SECRET not in encoded
    return event


def test_defaults_mask_query_and_form_secrets_and_note_them() -> None:
    redactor = Redactor.from_options()
    f = flow(
        b"/login?next=/home&api_key=" + SECRET + b"&X-Amz-Signature=" + SECRET,
        b"user=ann&password=" + SECRET + b"&remember=1",
        b"application/x-www-form-urlencoded; charset=utf-8",
        headers=[(b"Content-Type", b"application/x-www-form-urlencoded")],
        content=b"access_token=" + SECRET + b"&token_type=bearer",
    )
    event = event_of(f, redactor)
    assert event["path"] == b"/login?next=/home&api_key=***&X-Amz-Signature=***"
    assert event["request"]["body"] == b"user=ann&password=***&remember=1"
    assert event["request"]["body_length"] == len(b"user=ann&password=***&remember=1")
    headers = event["request"]["headers"]
    assert headers[headers.index(b"Content-Length") + 1] == b"32"
    assert event["response"]["message"]["body"] == b"access_token=***&token_type=bearer"
    assert event["recorder"]["redactions"] == [
        "request.query:api_key=mask",
        "request.query:x-amz-signature=mask",
        "request.form:password=mask",
        "response.form:access_token=mask",
    ]


def test_defaults_off_and_user_rules() -> None:
    f = flow(b"/p?password=" + SECRET + b"&code=" + SECRET)
    off = Redactor.from_options(defaults=False)
    assert not off.active
    assert flow_to_event(f, 1 << 20, recorder_info("t"), off)["path"] == f.request.data.path
    mine = Redactor.from_options(defaults=False, param_specs=["CODE=drop"])
    event = flow_to_event(f, 1 << 20, recorder_info("t"), mine)
    assert event["path"] == b"/p?password=" + SECRET
    assert event["recorder"]["redactions"] == ["request.query:code=drop"]
    both = Redactor.from_options(
        param_specs=["code=drop", "password=hmac"],
        key_file=None,
        environ={"TRAFFICMIRROR_REDACT_KEY": KEY.decode()},
    )
    event = event_of(f, both)
    digest = both.digest(SECRET).encode()
    assert event["path"] == b"/p?password=" + digest
    assert digest.startswith(HMAC_PREFIX.encode())


def test_hmac_of_a_field_is_keyed_by_its_decoded_value() -> None:
    redactor = Redactor(params={"token": "hmac"}, key=KEY)
    plain = event_of(flow(b"/p?token=a%20b"), redactor)["path"]
    plus = event_of(flow(b"/p?token=a+b"), redactor)["path"]
    assert plain == plus == b"/p?token=" + redactor.digest(b"a b").encode()


def test_form_bodies_cut_encoded_or_unreadable() -> None:
    redactor = Redactor.from_options()
    body = b"a=1&password=" + SECRET + b"&b=2"
    # Streamed and cut at the cap inside the secret: what was kept is redacted, the
    # length stays the original one.
    f = flow(b"/", body, FORM)
    capture = BodyCapture(16, CaptureBudget())
    capture(body)
    capture(b"")
    f.request.data.content = None
    f.request.stream = capture
    event = event_of(f, redactor, max_body=16)
    request = event["request"]
    assert request["body"] == b"a=1&password=***" and request["body_truncated"]
    assert request["body_length"] == len(body)
    headers = request["headers"]
    assert headers[headers.index(b"Content-Length") + 1] == str(len(body)).encode()
    # gzip: decoded, redacted, encoded again.
    f = flow(b"/", gzip.compress(body), FORM)
    f.request.headers["Content-Encoding"] = "gzip"
    event = event_of(f, redactor)
    assert gzip.decompress(event["request"]["body"]) == b"a=1&password=***&b=2"
    # A body that says gzip but is not: dropped, it may hold a secret.
    f = flow(b"/", body, FORM)
    f.request.headers["Content-Encoding"] = "gzip"
    event = event_of(f, redactor)
    assert (
        event["request"]["body"] == b"" and "request.body=drop" in event["recorder"]["redactions"]
    )
    # Multipart without a boundary: dropped too.
    event = event_of(flow(b"/", body, b"multipart/form-data"), redactor)
    assert event["request"]["body"] == b""
    # Not a form: left alone (JSON has its own rules).
    json_body = b'{"password": "x"}'
    assert (
        event_of(flow(b"/", json_body, b"application/json"), redactor)["request"]["body"]
        == json_body
    )


def test_multipart_through_the_redactor() -> None:
    body = (
        b'--b1\r\nContent-Disposition: form-data; name="password"\r\n\r\n' + SECRET + b"\r\n"
        b'--b1\r\nContent-Disposition: form-data; name="user"\r\n\r\nann\r\n--b1--\r\n'
    )
    event = event_of(flow(b"/", body, b"multipart/form-data; boundary=b1"), Redactor.from_options())
    assert event["request"]["body"] == body.replace(SECRET, MASK.encode())
    assert event["recorder"]["redactions"] == ["request.form:password=mask"]


def test_bad_parameter_rules() -> None:
    for spec, message in (
        ("=mask", "not a field name"),
        ("a&b", "not a field name"),
        ("token=jwt-claims", "headers only"),
        ("token=zap", "unknown mode"),
        ("token=hmac", "needs a key"),
    ):
        with pytest.raises(ConfigError, match=message):
            Redactor.from_options(param_specs=[spec], environ={})


def test_the_default_list() -> None:
    assert {"api_key", "password", "token", "x-amz-signature", "secret"} <= set(DEFAULT_PARAMS)
    assert all(name == name.lower() for name in DEFAULT_PARAMS)


FORM = b"application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    "path",
    [
        b"/p?x=1&y=2",
        b"/p?API_KEY=v&x=1",
        b"/p?x=1&Token=t",
        b"/p?api%5Fkey=v",
        b"/p?a+b=1&sig=s",
        b"/p?api_key",
        b"/p?xapi_key=1",
        "/p?TO\u212aEN=t".encode(),  # KELVIN SIGN lower-cases to k
    ],
)
def test_the_quick_test_of_a_query_gives_the_same_answer(path: bytes) -> None:
    quick = params.quick_filter(RULES)
    assert quick is not None
    slow: list[tuple[str, str]] = []
    fast: list[tuple[str, str]] = []
    expected = params.redact_query(path, RULES, replace, slow)
    assert params.redact_query(path, RULES, replace, fast, quick) == expected
    assert fast == slow


def test_no_quick_test_for_names_beyond_ascii() -> None:
    assert params.quick_filter({"pässword": "mask"}) is None
    redactor = Redactor(params={"pässword": "mask"})
    notes: list[str] = []
    assert redactor.redact_path("/p?PÄSSWORD=x".encode(), notes) == "/p?PÄSSWORD=***".encode()
    assert notes == ["request.query:pässword=mask"]
