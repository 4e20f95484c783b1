"""Rewrite rules: headers, regex replace in path, query, header values and bodies, JSON."""

from __future__ import annotations

import gzip
import json
from dataclasses import fields
from pathlib import Path

import pytest

from replayer.models import OutgoingRequest, Skipped, Target
from replayer.transforming.rules import (
    json_delete,
    json_set,
    rebuilt,
    remove_header,
    set_header,
)
from tests.replayer.transforming.helpers import chain_of, context, event, request_of, run
from trafficmirror.plumbing.jsonpath import JsonPattern

HEADERS = [
    ("Host", "shop.example.com"),
    ("Authorization", "***"),
    ("Cookie", "a=1"),
    ("authorization", "***"),
    ("Referer", "https://prod.example.com/cart"),
    ("Content-Type", "application/json"),
]


def test_rebuilt_is_the_constructor_with_four_fields_changed() -> None:
    # Every field off its default, so a field `rebuilt` forgot to copy shows.
    original = OutgoingRequest(
        "GET",
        Target.parse("https://shadow.example:8443"),
        "/a?b=1",
        (("A", "1"),),
        b"x",
        "ex-1",
        "HTTP/2.0",
        (("grpc-status", "0"),),
    )
    new = rebuilt(original, "POST", "/c", (("B", "2"),), b"yz")
    expected = OutgoingRequest(
        "POST", original.target, "/c", (("B", "2"),), b"yz", "ex-1", "HTTP/2.0", original.trailers
    )
    assert new == expected and hash(new) == hash(expected)
    assert {f.name: getattr(new, f.name) for f in fields(new)} == {
        f.name: getattr(expected, f.name) for f in fields(expected)
    }
    with pytest.raises(AttributeError):  # still frozen
        new.path = "/d"  # type: ignore[misc]


def test_set_header_replaces_every_occurrence_with_one_and_adds_a_missing_one() -> None:
    headers = (("A", "1"), ("X-Key", "old"), ("B", "2"), ("x-key", "older"))
    assert set_header(headers, "X-Key", "new") == (("A", "1"), ("X-Key", "new"), ("B", "2"))
    assert set_header((("A", "1"),), "X-Key", "new") == (("A", "1"), ("X-Key", "new"))
    assert remove_header(headers, "X-KEY") == (("A", "1"), ("B", "2"))


def test_header_rules_and_their_names_in_the_context() -> None:
    ev = event(headers=HEADERS)
    chain = chain_of(
        """\
  - name: auth
    set_header: {name: Authorization, value: "Bearer ${TOKEN}"}
  - name: no-cookie
    remove_header: Cookie
  - name: absent
    remove_header: X-Not-There
  - name: referer
    replace_header: {name: referer, pattern: '//prod\\.', with: '//shadow.'}
""",
        {"TOKEN": "t0k"},
    )
    ctx = context(ev)
    out = run(chain, request_of(ev), ctx)
    assert [h for h in out.headers if h[0].lower() in ("authorization", "cookie", "referer")] == [
        ("Authorization", "Bearer t0k"),
        ("Referer", "https://shadow.example.com/cart"),
    ]
    assert out.header("Host") == "shadow:8080"
    assert ctx.applied == ["auth", "no-cookie", "referer"]  # `absent` changed nothing


def test_regex_in_path_and_query_keep_each_other_apart() -> None:
    ev = event(path="/api/v1/orders/17?tenant=prod&v1=yes")
    chain = chain_of(
        """\
  - name: v2
    replace_path: {pattern: '^/api/v1/', with: /api/v2/}
  - name: tenant
    replace_query: {pattern: 'tenant=prod', with: 'tenant=shadow'}
  - name: not-in-path
    replace_path: {pattern: 'tenant', with: 'x'}
"""
    )
    ctx = context(ev)
    out = run(chain, request_of(ev), ctx)
    assert out.path == "/api/v2/orders/17?tenant=shadow&v1=yes"
    assert ctx.applied == ["v2", "tenant"]
    bare = event(path="/api/v1/x")
    assert run(chain, request_of(bare), context(bare)).path == "/api/v2/x"


def test_a_query_replaced_by_nothing_leaves_no_question_mark() -> None:
    ev = event(path="/search?debug=1")
    chain = chain_of("  - name: q\n    replace_query: {pattern: '^debug=1$', with: ''}\n")
    assert run(chain, request_of(ev), context(ev)).path == "/search"


def test_a_text_body_is_replaced_and_content_length_follows() -> None:
    body = b'{"env":"prod","note":"caf\xc3\xa9 prod"}'
    ev = event(
        method="POST",
        headers=[("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        body=body,
    )
    chain = chain_of("  - name: env\n    replace_body: {pattern: prod, with: shadow-build}\n")
    out = run(chain, request_of(ev), context(ev))
    assert out.body == '{"env":"shadow-build","note":"café shadow-build"}'.encode()
    assert out.header("Content-Length") == str(len(out.body))


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ([("Content-Type", "text/plain")], b"\xff\xfeprod"),  # not UTF-8
        ([("Content-Encoding", "gzip")], gzip.compress(b"prod", mtime=0)),  # encoded
    ],
)
def test_a_body_that_is_not_plain_text_is_left_alone(
    headers: list[tuple[str, str]], body: bytes
) -> None:
    ev = event(method="POST", headers=headers, body=body)
    chain = chain_of("  - name: env\n    replace_body: {pattern: prod, with: shadow}\n")
    ctx = context(ev)
    out = run(chain, request_of(ev), ctx)
    assert out.body == body and ctx.applied == []


def test_json_set_and_delete_in_a_request_body() -> None:
    document = {"user": {"name": "a", "email": "a@prod"}, "payment": {"card": "4111"}, "n": 1}
    body = json.dumps(document).encode()
    ev = event(
        method="POST",
        headers=[("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        body=body,
    )
    chain = chain_of(
        """\
  - name: email
    json_set: {path: $.user.email, value: "shadow@example.com"}
  - name: tenant
    json_set: {path: $.meta.tenant, value: {id: 2, live: false}}
  - name: card
    json_delete: $.payment.card
  - name: missing
    json_delete: $.nothing
"""
    )
    ctx = context(ev)
    out = run(chain, request_of(ev), ctx)
    assert json.loads(out.body) == {
        "user": {"name": "a", "email": "shadow@example.com"},
        "payment": {},
        "n": 1,
        "meta": {"tenant": {"id": 2, "live": False}},
    }
    assert out.header("Content-Length") == str(len(out.body))
    assert ctx.applied == ["email", "tenant", "card"]


def test_json_rules_leave_a_body_that_is_not_json_alone() -> None:
    ev = event(method="POST", body=b"name=a&email=b")
    chain = chain_of("  - name: email\n    json_set: {path: $.email, value: x}\n")
    ctx = context(ev)
    assert run(chain, request_of(ev), ctx).body == b"name=a&email=b"
    assert ctx.applied == []


def test_json_patterns_set_and_delete_every_match() -> None:
    doc = {"items": [{"id": 1, "secret": "a"}, {"id": 2, "secret": "b"}], "secret": "c"}
    assert json_set(doc, JsonPattern.parse("$.items[*].id"), 0)[0]["items"] == [
        {"id": 0, "secret": "a"},
        {"id": 0, "secret": "b"},
    ]
    out, changed = json_delete(doc, JsonPattern.parse("$..secret"))
    assert changed and out == {"items": [{"id": 0}, {"id": 0}]}
    listed = {"a": [1, 2, 3, 4]}
    assert json_delete(listed, JsonPattern.parse("$.a[*]"))[0] == {"a": []}
    # A wildcard that matches nothing adds nothing; a value already there is no change.
    assert json_set({"a": 1}, JsonPattern.parse("$.*.b"), 2) == ({"a": 1}, False)
    assert json_set({"a": 1}, JsonPattern.parse("$.a"), 1) == ({"a": 1}, False)
    # A concrete path cannot go through a value that is not an object.
    assert json_set({"a": 1}, JsonPattern.parse("$.a.b"), 2) == ({"a": 1}, False)


def test_a_header_value_from_a_file_with_a_newline_inside_skips_the_record(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "token"
    secret.write_text("line1\nline2\n")
    ev = event()
    chain = chain_of(f"  - name: auth\n    set_header: {{name: X-Token, value: '@{secret}'}}\n")
    with pytest.raises(Skipped) as caught:
        run(chain, request_of(ev), context(ev))
    assert caught.value.reason == "transform"
    assert "line1" not in str(caught.value)


def test_a_rule_that_makes_the_path_unsendable_skips_the_record() -> None:
    ev = event(path="/a/b")
    chain = chain_of("  - name: space\n    replace_path: {pattern: '/b', with: '/b c'}\n")
    with pytest.raises(Skipped) as caught:
        run(chain, request_of(ev), context(ev))
    assert str(caught.value) == "rule space made the path '/a/b c', not a path"


def test_a_regex_rule_gives_each_value_its_own_result_however_often_values_repeat() -> None:
    # The rule remembers recent results (header values and queries repeat); a value
    # seen before, a new one and many more than it remembers each get their own.
    chain = chain_of(
        """\
  - name: agent
    replace_header: {name: User-Agent, pattern: 'app/(\\d+)', with: 'shadow/\\1'}
  - name: tenant
    replace_query: {pattern: 'tenant=(\\w+)', with: 'tenant=s-\\1'}
"""
    )
    step = chain.entries[0].step
    for i in [*range(600), 7, 7, 599, 0]:
        ev = event(path=f"/x?tenant=t{i % 300}", headers=[("User-Agent", f"app/{i} (x)")])
        ctx = context(ev)
        out = run(chain, request_of(ev), ctx)
        assert out.header("User-Agent") == f"shadow/{i} (x)"
        assert out.path == f"/x?tenant=s-t{i % 300}"
        assert ctx.applied == ["agent", "tenant"]
    assert len(step._memo) <= 256  # type: ignore[attr-defined]


def test_header_rules_treat_one_occurrence_and_several_alike() -> None:
    chain = chain_of(
        """\
  - name: ref
    replace_header: {name: referer, pattern: 'prod', with: 'shadow'}
  - name: no-cookie
    remove_header: Cookie
"""
    )
    for headers, refs in [
        ([("Referer", "prod/a"), ("Cookie", "c=1")], ["shadow/a"]),
        ([("Referer", "prod/a"), ("cookie", "1"), ("referer", "prod/b"), ("Cookie", "2")],
         ["shadow/a", "shadow/b"]),
    ]:  # fmt: skip
        ev = event(headers=headers)
        out = run(chain, request_of(ev), context(ev))
        assert [v for n, v in out.headers if n.lower() == "referer"] == refs
        assert not [n for n, _ in out.headers if n.lower() == "cookie"]
