"""The signature detectors on single events: what they find, where, and what they pass."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from monitor.config import SIGNATURES
from monitor.findings import Finding
from monitor.signatures import Signatures
from schemas.records import HttpExchange
from tests.replayer.events import make_event
from trafficmirror.demo.traffic import plan


def scan(**kwargs: Any) -> list[Finding]:
    event = cast(HttpExchange, make_event(**kwargs))
    return Signatures(SIGNATURES, 65536).scan(event, "addr:10.0.0.1", "GET /x")


def kinds(**kwargs: Any) -> dict[str, tuple[str | None, str | None]]:
    return {f.kind: (f.location, f.detector) for f in scan(**kwargs)}


def test_sql_injection_in_a_query_parameter() -> None:
    found = kinds(path="/items?id=1%27%20OR%20%271%27%3D%271&page=2")
    assert found["sql_injection"][0] == "query:id"
    assert (found["sql_injection"][1] or "").startswith("libinjection-sqli:")


@pytest.mark.parametrize(
    ("request_kwargs", "location"),
    [
        ({"path": "/search?q=%3Cscript%3Ealert(1)%3C/script%3E"}, "query:q"),
        ({"path": "/%3Csvg%20onload=alert(1)%3E"}, "path"),
        (
            {
                "method": "POST",
                "path": "/comments",
                "headers": [("Content-Type", "application/json")],
                "body": json.dumps({"post": {"text": '"><img src=x onerror=alert(1)>'}}).encode(),
            },
            "body:$.post.text",
        ),
    ],
)
def test_xss(request_kwargs: dict[str, Any], location: str) -> None:
    assert kinds(**request_kwargs)["xss"] == (location, "libinjection-xss")


def test_sql_injection_in_a_form_body_and_a_cookie() -> None:
    form = kinds(
        method="POST",
        path="/login",
        headers=[("Content-Type", "application/x-www-form-urlencoded")],
        body=b"user=admin%27--&password=x",
    )
    assert form["sql_injection"][0] == "body:user"
    cookie = kinds(headers=[("Cookie", "session=abc; pref=1%27%20OR%201%3D1--")])
    assert cookie["sql_injection"][0] == "header:cookie:pref"


@pytest.mark.parametrize(
    ("path", "detector"),
    [
        ("/static/../../etc/passwd", "traversal:dot-dot"),
        ("/download?file=..%2F..%2Fetc%2Fshadow", "traversal:dot-dot"),
        ("/files/%252e%252e%252fsecret", "traversal:dot-dot"),
        ("/a/%c0%ae%c0%ae/b", "traversal:encoded-dot"),
        ("/view?page=/proc/self/environ", "traversal:target-file"),
    ],
)
def test_path_traversal(path: str, detector: str) -> None:
    assert kinds(path=path)["path_traversal"][1] == detector


def test_scanner_user_agent() -> None:
    found = kinds(headers=[("User-Agent", "sqlmap/1.8.2#stable (https://sqlmap.org)")])
    assert found["scanner"] == ("header:user-agent", "scanner:sqlmap")
    assert "scanner" not in kinds(headers=[("User-Agent", "Mozilla/5.0 (X11; Linux) Zapier")])


def test_credentials_are_never_read_and_never_in_a_finding() -> None:
    secret = "1' OR '1'='1"
    found = scan(
        path="/items?id=1%27%20OR%20%271%27%3D%271",
        headers=[("Authorization", f"Bearer {secret}"), ("X-Api-Key", secret)],
    )
    assert found and all(f.location == "query:id" for f in found)
    assert kinds(headers=[("Authorization", secret), ("X-Api-Key", secret)]) == {}
    for finding in found:
        assert secret not in repr(finding)


@pytest.mark.parametrize(
    "text",
    ["O'Brien", "select a from b", "it's 5 o'clock", "red hat", "a&b=c", "de-CH, en;q=0.5"],
)
def test_ordinary_values_pass(text: str) -> None:
    from urllib.parse import quote

    assert kinds(path=f"/search?q={quote(text)}") == {}


def test_the_demo_traffic_raises_nothing() -> None:
    for planned in plan(200, connections=6):
        found = kinds(
            method=planned.method, path=planned.path, headers=planned.headers, body=planned.body
        )
        assert found == {}, (planned.method, planned.path, found)


def test_binary_bodies_are_skipped_and_detectors_can_be_turned_off() -> None:
    body = b"1' OR '1'='1"
    assert (
        kinds(
            method="PUT",
            path="/u",
            headers=[("Content-Type", "application/octet-stream")],
            body=body,
        )
        == {}
    )
    event = cast(HttpExchange, make_event(path="/x?id=1%27%20OR%20%271%27%3D%271"))
    assert Signatures(("xss",), 65536).scan(event, "c", "e") == []
