"""Comparison of a shadow response with production's: status, headers, bodies, baseline."""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import replace
from typing import Any

import pytest

from replayer.comparing.noise import Rules, build_rules
from replayer.comparing.responses import (
    Difference,
    ResponseView,
    classify,
    compare,
    compare_exchange,
    decode_content,
    diff_text,
)
from tests.replayer.comparing.helpers import JSON, paths, resp

# -- status and headers -------------------------------------------------------------


def test_identical_responses_have_no_difference() -> None:
    r = resp({"a": 1}, headers=((b"X-A", b"1"),))
    assert compare(r, r) == []


def test_status_difference() -> None:
    (diff,) = compare(resp(status=200), resp(status=503))
    assert diff == Difference("status", "status", "200", "503")


def test_default_ignored_headers_are_not_compared() -> None:
    a = resp(headers=((b"Date", b"Mon"), (b"Server", b"a"), (b"X-Request-Id", b"1")))
    b = resp(
        headers=((b"date", b"Tue"), (b"Server", b"b"), (b"x-b3-traceid", b"9"), (b"ETag", b"x"))
    )
    assert compare(a, b) == []


def test_header_added_removed_changed_case_insensitive() -> None:
    a = resp(headers=((b"Cache-Control", b"no-store"), (b"X-Old", b"1"), (b"Vary", b"A")))
    b = resp(headers=((b"cache-control", b"private"), (b"X-New", b"2"), (b"VARY", b"A")))
    assert compare(a, b) == [
        Difference("header", "cache-control", "no-store", "private"),
        Difference("header", "x-old", "1", None),
        Difference("header", "x-new", None, "2"),
    ]


def test_duplicate_header_values_compare_in_order() -> None:
    a = resp(headers=((b"Link", b"<a>"), (b"Link", b"<b>")))
    b = resp(headers=((b"Link", b"<b>"), (b"Link", b"<a>")))
    (diff,) = compare(a, b)
    assert diff.path == "link"
    assert diff.production == '["<a>","<b>"]'


def test_header_rules_noise_and_compare() -> None:
    rules = build_rules(ignore_headers=["X-Build-*"], compare_headers=["Server"])
    a = resp(headers=((b"Server", b"v1"), (b"X-Build-Id", b"1")))
    b = resp(headers=((b"Server", b"v2"), (b"X-Build-Id", b"2")))
    assert compare(a, b, rules) == [
        Difference("header", "server", "v1", "v2"),
        Difference("header", "x-build-id", "1", "2", noise=True),
    ]


# -- text and binary -------------------------------------------------------------------


def test_text_reports_changed_lines() -> None:
    a = resp(b"one\ntwo\nthree\nfour\n", headers=((b"Content-Type", b"text/plain"),))
    b = resp(b"one\nTWO\nthree\nfour\nfive\n", headers=((b"Content-Type", b"text/plain"),))
    assert [(d.kind, d.path, d.production, d.shadow) for d in compare(a, b)] == [
        ("body_text", "line 2", "two", "TWO"),
        ("body_text", "line 5", None, "five"),
    ]


def test_text_hunks_are_capped() -> None:
    a = "\n".join(f"line{i}" for i in range(100))
    b = "\n".join(f"LINE{i}" if i % 2 else f"line{i}" for i in range(100))
    assert len(diff_text(a, b)) == 10


def test_text_replacements() -> None:
    rules = build_rules(replacements=[r"took \d+ms=>took Nms"])
    a = resp(b"ok, took 12ms", headers=((b"Content-Type", b"text/plain"),))
    b = resp(b"ok, took 99ms", headers=((b"Content-Type", b"text/plain"),))
    assert compare(a, b, rules) == []


def test_json_against_html_error_page_is_a_text_difference() -> None:
    a = resp({"ok": True})
    b = resp(b"<html>oops</html>", headers=((b"Content-Type", b"text/html"),))
    kinds = {d.kind for d in compare(a, b)}
    assert kinds == {"header", "body_text"}


def test_binary_by_size_and_hash() -> None:
    png = ((b"Content-Type", b"image/png"),)
    (diff,) = compare(resp(b"\x89PNG\x00\x01", headers=png), resp(b"\x89PNG\x00\x02", headers=png))
    assert diff.kind == "body_binary" and diff.path == "body"
    assert diff.production is not None and diff.production.startswith("6 bytes sha256:")
    assert compare(resp(b"\x00\x01", headers=png), resp(b"\x00\x01", headers=png)) == []


@pytest.mark.parametrize(
    "encode,coding",
    [
        (gzip.compress, b"gzip"),
        (zlib.compress, b"deflate"),
        (lambda d: zlib.compress(d)[2:-4], b"deflate"),  # raw deflate, as some servers send
    ],
)
def test_content_encoding_is_undone_before_comparing(encode: Any, coding: bytes) -> None:
    body = json.dumps({"a": [1, 2, 3]}).encode()
    a = resp(encode(body), headers=(JSON, (b"Content-Encoding", coding)))
    b = resp(body, headers=(JSON,))
    assert decode_content(a) == body
    # Only the header differs: the bodies are the same once decoded.
    assert paths(compare(a, b)) == [("header", "content-encoding")]


def test_brotli_when_available() -> None:
    brotli = pytest.importorskip("brotli")
    body = b'{"a": 1}'
    a = resp(brotli.compress(body), headers=(JSON, (b"Content-Encoding", b"br")))
    assert decode_content(a) == body


def test_undecodable_content_compares_raw() -> None:
    bad = resp(b"not gzip", headers=((b"Content-Encoding", b"gzip"),))
    assert decode_content(bad) == b"not gzip"


def test_truncated_production_body_compares_prefix_and_length() -> None:
    full = b"x" * 100
    prod = resp(full[:10], body_truncated=True, body_length=100)
    assert compare(prod, resp(full)) == []
    (diff,) = compare(prod, resp(full + b"y"))
    assert diff.kind == "body_binary"
    streamed = resp(b"", body_truncated=True, body_length=-1)
    assert compare(streamed, resp(b"anything")) == []


# -- baseline --------------------------------------------------------------------------


def test_classify_marks_differences_the_baseline_also_has() -> None:
    prod = resp({"ts": 1, "meta": {"a": 1}, "name": "x"})
    shadow = resp({"ts": 2, "meta": {"a": 2}, "name": "y"})
    baseline = resp({"ts": 3, "meta": {"a": 3, "b": 1}, "name": "x"})
    diffs = classify(compare(prod, shadow), compare(prod, baseline))
    assert [(d.path, d.noise) for d in diffs] == [
        ("$.ts", True),
        ("$.meta.a", True),
        ("$.name", False),
    ]
    # A baseline difference at an ancestor covers everything below it.
    covering = [Difference("body_json", "$.meta", "1", "2")]
    (meta,) = classify([Difference("body_json", "$.meta.a", "1", "2")], covering)
    assert meta.noise
    (other,) = classify([Difference("body_json", "$.metadata", "1", "2")], covering)
    assert not other.noise


def event_with(response: ResponseView | None) -> dict[str, Any]:
    if response is None:
        return {"response": None, "error": "connection reset"}
    flat = [x for pair in response.headers for x in pair]
    return {
        "response": {
            "status": response.status,
            "reason": b"OK",
            "http_version": "HTTP/1.1",
            "message": {
                "headers": flat,
                "body": response.body,
                "body_truncated": False,
                "body_length": len(response.body),
                "trailers": None,
            },
        }
    }


def test_compare_exchange_reads_the_event_and_uses_the_baseline() -> None:
    prod = resp({"id": 1, "ts": 1})
    event = event_with(prod)
    assert ResponseView.from_event(event) == replace(prod, body_length=len(prod.body))
    shadow = resp({"id": 2, "ts": 2})
    baseline = resp({"id": 1, "ts": 3})
    diffs = compare_exchange(event, shadow, Rules(), baseline)
    assert [(d.path, d.noise) for d in diffs] == [("$.id", False), ("$.ts", True)]
    assert compare_exchange(event_with(None), shadow) == []


def test_a_mirror_capture_is_compared_with_the_baseline_under_the_rules_only() -> None:
    mirror = {"response": None, "error": None, "recorder": {"capture": "mirror"}}
    shadow = resp({"id": 2, "ts": 2, "at": "x"})
    baseline = resp({"id": 1, "ts": 3, "at": "x"})
    # The baseline is the reference: nothing is left to classify noise against, so a
    # field that differs on every call (ts) is a real difference until a rule names it.
    diffs = compare_exchange(mirror, shadow, Rules(), baseline)
    assert [(d.path, d.production, d.shadow, d.noise) for d in diffs] == [
        ("$.id", "1", "2", False),
        ("$.ts", "3", "2", False),
    ]
    ruled = compare_exchange(mirror, shadow, build_rules(ignore_paths=["$.ts"]), baseline)
    assert [(d.path, d.noise) for d in ruled] == [("$.id", False), ("$.ts", True)]
    # Without a baseline there is nothing to compare with; nor for a proxy event
    # whose production failed, baseline or not.
    assert compare_exchange(mirror, shadow, Rules()) == []
    failed = {**event_with(None), "recorder": {"capture": "proxy"}}
    assert compare_exchange(failed, shadow, Rules(), baseline) == []


def test_response_of_client_parts() -> None:
    r = ResponseView.of(200, [("Content-Type", "application/json"), (b"X-Raw", b"\xff")], b"{}")
    assert r.headers == ((b"Content-Type", b"application/json"), (b"X-Raw", b"\xff"))
    assert r.header_values("content-type") == [b"application/json"]
