"""The rules file: each section read into typed config; anything wrong is one line with its line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from replayer.transforming.config import (
    JsonDelete,
    JsonSet,
    JwtResign,
    OAuth2ClientCredentials,
    RemoveHeader,
    Replace,
    SetHeader,
)
from replayer.transforming.loader import load_file, parse_text
from replayer.transforming.values import ValueReader
from trafficmirror.plumbing.errors import ConfigError

FULL = """\
target_map:
  shop.example.com: http://127.0.0.1:8081
  API.example.com:8443: http://127.0.0.1:8082/
rules:
  - name: shadow-auth
    set_header: {name: Authorization, value: "Bearer ${SHADOW_TOKEN}"}
  - name: no-cookies
    remove_header: Cookie
  - name: v2-api
    when: {method: [get, POST], path: '^/api/', authority: shop.example.com}
    replace_path: {pattern: '^/api/v1/', with: /api/v2/}
  - name: tenant
    apply_to: shadow
    when: {path_glob: /orders/*}
    replace_query: {pattern: 'tenant=prod', with: 'tenant=shadow'}
  - name: referer
    replace_header: {name: Referer, pattern: 'https://prod\\.', with: 'https://shadow.'}
  - name: body-env
    replace_body: {pattern: '"env":"prod"', with: '"env":"shadow"'}
  - name: email
    json_set: {path: $.user.email, value: shadow@example.com}
  - name: flags
    json_set: {path: $.flags, value: {beta: true, tries: 3}}
  - name: card
    json_delete: $.payment.card
credentials:
  - name: shop-oauth
    apply_to: shadow
    when: {authority: [shop.example.com, "api.example.com:8443"]}
    oauth2:
      token_url: http://127.0.0.1:9000/token
      client_id: replayer
      client_secret: ${CLIENT_SECRET}
      scope: orders
      client_auth: form
  - name: shop-jwt
    jwt_resign: {algorithm: rs256, key: "${file:KEYFILE}", refresh_times: true, prefix: ""}
correlate:
  - name: order-id
    response_json: $.id
  - name: location
    response_header: Location
  - name: ticket
    response_regex: 'ticket=(\\w+)'
hook: hooks:transform
"""

ENV = {"SHADOW_TOKEN": "s3cr3t-t0k", "CLIENT_SECRET": "cl13nt-s3cr3t"}


def test_a_full_file_is_read_section_by_section(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    options = parse_text(FULL.replace("KEYFILE", str(key)), "t.yaml", ENV)
    assert options.source == "t.yaml"
    assert [(m.host, m.port, m.url) for m in options.target_map] == [
        ("shop.example.com", None, "http://127.0.0.1:8081"),
        ("api.example.com", 8443, "http://127.0.0.1:8082/"),
    ]
    names = [r.name for r in options.rules]
    assert names == [
        "shadow-auth",
        "no-cookies",
        "v2-api",
        "tenant",
        "referer",
        "body-env",
        "email",
        "flags",
        "card",
    ]
    auth, cookies, v2, tenant, referer, body, email, flags, card = options.rules
    assert isinstance(auth.action, SetHeader)
    assert ValueReader(auth.action.value).get() == "Bearer s3cr3t-t0k"
    assert auth.origin == "t.yaml:5"
    assert cookies.action == RemoveHeader("Cookie")
    assert isinstance(v2.action, Replace) and v2.action.where == "path"
    assert v2.when.methods == frozenset({"GET", "POST"})
    assert v2.when.path is not None and v2.when.path.pattern == "^/api/"
    assert v2.when.authorities == (("shop.example.com", None),)
    assert tenant.when.roles == frozenset({"shadow"})
    assert tenant.when.path is not None and tenant.when.path.match("/orders/17")
    assert not tenant.when.path.match("/users/17")
    assert isinstance(referer.action, Replace) and referer.action.name == "Referer"
    assert isinstance(body.action, Replace) and body.action.where == "body"
    assert isinstance(email.action, JsonSet) and email.action.path.text == "$.user.email"
    assert isinstance(flags.action, JsonSet)
    assert flags.action.value == {"beta": True, "tries": 3}
    assert isinstance(card.action, JsonDelete)

    oauth, jwt = options.credentials
    assert isinstance(oauth.kind, OAuth2ClientCredentials)
    assert oauth.kind.client_auth == "form" and oauth.kind.scope == "orders"
    assert ValueReader(oauth.kind.client_secret).get() == "cl13nt-s3cr3t"
    assert oauth.when.authorities == (("shop.example.com", None), ("api.example.com", 8443))
    assert oauth.when.roles == frozenset({"shadow"})
    assert isinstance(jwt.kind, JwtResign)
    assert (jwt.kind.algorithm, jwt.kind.prefix, jwt.kind.refresh_times) == ("RS256", "", True)
    assert jwt.kind.header == "Authorization"
    assert ValueReader(jwt.kind.key).get() == "-----BEGIN PRIVATE KEY-----"

    order, location, ticket = options.correlate
    assert order.response_json is not None and order.response_json.text == "$.id"
    assert location.response_header == "location"
    assert ticket.response_regex is not None and ticket.response_regex.groups == 1
    assert options.hook == "hooks:transform"
    assert options.enabled


def test_secrets_do_not_show_in_the_options_repr(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("PEM")
    options = parse_text(FULL.replace("KEYFILE", str(key)), "t.yaml", ENV)
    text = repr(options)
    assert "s3cr3t" not in text


def test_an_empty_file_transforms_nothing() -> None:
    options = parse_text("", "empty.yaml", {})
    assert not options.enabled and options.source == "empty.yaml"
    assert not parse_text("rules: []\ncorrelate:\n", "e.yaml", {}).enabled


BAD = [
    ("rules:\n  - name: a\n   set_header: {name: X\n", "bad.yaml:3: expected <block end>"),
    ("rules: {a: 1}\n", "bad.yaml:1: rules must be a list"),
    ("rulez: []\n", "bad.yaml:1: unknown key 'rulez' in the rules file"),
    ("rules:\n  - set_header: {name: X, value: y}\n", "bad.yaml:2: a rule has no name"),
    (
        "rules:\n  - name: a\n    remove_header: X\n  - name: a\n    remove_header: Y\n",
        "bad.yaml:4: the name 'a' is already used at bad.yaml:2",
    ),
    (
        "rules:\n  - name: a\n    remove_header: X\n    set_header: {name: Y, value: z}\n",
        "bad.yaml:2: rule 'a' needs exactly one action",
    ),
    ("rules:\n  - name: a\n    when: {}\n", "bad.yaml:2: rule 'a' needs exactly one action"),
    (
        "rules:\n  - name: a\n\n    set_header: {name: X, value: '${NOT_SET_ANYWHERE}'}\n",
        "bad.yaml:4: environment variable NOT_SET_ANYWHERE is not set",
    ),
    (
        "rules:\n  - name: a\n    set_header: {name: Host, value: x}\n",
        "bad.yaml:3: a rule cannot change Host: Host names the target",
    ),
    (
        "rules:\n  - name: a\n    remove_header: Content-Length\n",
        "bad.yaml:3: a rule cannot change Content-Length",
    ),
    ("rules:\n  - name: a\n    remove_header: 'Bad Name'\n", "bad.yaml:3: 'Bad Name' is not a"),
    ("rules:\n  - name: a\n    set_header: {name: X}\n", "bad.yaml:3: set_header needs value"),
    (
        "rules:\n  - name: a\n    replace_path: {pattern: '(a', with: x}\n",
        "bad.yaml:3: bad regular expression '(a'",
    ),
    (
        "rules:\n  - name: a\n    replace_path:\n      pattern: '(a)'\n      with: '\\2'\n",
        "bad.yaml:5: bad replacement '\\\\2': invalid group reference 2",
    ),
    (
        "rules:\n  - name: a\n    json_delete: user.name\n",
        "bad.yaml:3: bad JSON path pattern 'user.name'",
    ),
    ("rules:\n  - name: a\n    json_delete: $\n", "bad.yaml:3: '$' names the whole body"),
    (
        "rules:\n  - name: a\n    apply_to: prod\n    remove_header: X\n",
        "bad.yaml:3: apply_to is shadow, baseline or both, not 'prod'",
    ),
    (
        "rules:\n  - name: a\n    when: {method: 'GE T'}\n    remove_header: X\n",
        "bad.yaml:3: 'GE T' is not a method",
    ),
    (
        "rules:\n  - name: a\n    when: {path: x, path_glob: y}\n    remove_header: X\n",
        "bad.yaml:3: give path (a regular expression) or path_glob, not both",
    ),
    (
        "rules:\n  - name: a\n    when: {host: x}\n    remove_header: X\n",
        "bad.yaml:3: unknown key 'host' in when",
    ),
    ("target_map:\n  shop: ftp://x\n", "bad.yaml:2: target 'ftp://x' is not an http"),
    ("target_map:\n  shop:99999: http://x\n", "bad.yaml:2: 'shop:99999' has a bad port"),
    ("target_map:\n  shop: http://x/path\n", "bad.yaml:2: target 'http://x/path' has a path"),
    (
        "credentials:\n  - name: c\n    oauth2: {token_url: x, client_id: a, client_secret: b}\n",
        "bad.yaml:3: token_url 'x' is not an http(s) URL",
    ),
    (
        "credentials:\n  - name: c\n    oauth2: {token_url: 'http://t', client_id: a}\n",
        "bad.yaml:3: oauth2 needs client_secret",
    ),
    (
        "credentials:\n  - name: c\n    jwt_resign: {algorithm: none, key: k}\n",
        "bad.yaml:3: algorithm is HS256, RS256 or ES256, not 'NONE'",
    ),
    (
        "credentials:\n  - name: c\n    jwt_resign: {algorithm: HS256, key: k, refresh_times: 2}\n",
        "bad.yaml:3: refresh_times must be true or false",
    ),
    ("credentials:\n  - name: c\n", "bad.yaml:2: credential 'c' needs exactly one of"),
    (
        "correlate:\n  - name: id\n    response_regex: 'id=\\d+'\n",
        "bad.yaml:3: response_regex needs exactly one group, has 0",
    ),
    (
        "correlate:\n  - name: id\n    response_json: $.id\n    response_header: Location\n",
        "bad.yaml:2: correlation 'id' needs exactly one of",
    ),
    (
        "rules:\n  - name: a\n    remove_header: X\n    remove_header: Y\n",
        "bad.yaml:4: 'remove_header' is given twice in a rule",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_a_bad_file_is_one_line_naming_the_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_text(text, "bad.yaml", {})
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith(message), line


def test_load_file_reads_a_file_or_says_why_not(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            rules:
              - name: a
                remove_header: Cookie
            """
        )
    )
    assert [r.name for r in load_file(str(path), {}).rules] == ["a"]
    with pytest.raises(ConfigError, match=r"^cannot read .*missing.yaml: No such file"):
        load_file(str(tmp_path / "missing.yaml"))
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_file(str(path))
