"""Endpoint templates: ids become placeholders, names stay."""

from __future__ import annotations

import pytest

from replayer.comparing.endpoints import Router, classify_segment, printable, route
from trafficmirror.plumbing.errors import ConfigError


def test_same_route_for_different_ids() -> None:
    assert route("GET", "/users/17/orders/9") == "GET /users/{id}/orders/{id}"
    assert route("GET", "/users/17/orders/9") == route("get", b"/users/3/orders/4")


@pytest.mark.parametrize(
    "target,expected",
    [
        ("/", "/"),
        ("", "/"),
        ("/v2/api", "/v2/api"),
        ("/api/v1.1/items", "/api/v1.1/items"),
        ("/users/17?expand=orders&x=1", "/users/{id}"),
        ("/users/17#frag", "/users/{id}"),
        ("/items/-3", "/items/{id}"),
        ("/items/123.json", "/items/{id}.json"),
        ("/static/logo.png", "/static/logo.png"),
        ("/u/550e8400-e29b-41d4-a716-446655440000/x", "/u/{uuid}/x"),
        ("/u/550E8400-E29B-41D4-A716-446655440000", "/u/{uuid}"),
        ("/o/01ARZ3NDEKTSV4RRFFQ69G5FAV", "/o/{ulid}"),
        ("/o/5f2b7c9e0a1d4e3f8b6c2a1d", "/o/{hex}"),
        ("/commit/a1b2c3d4", "/commit/{hex}"),
        ("/blob/da39a3ee5e6b4b0d3255bfef95601890afd80709", "/blob/{hex}"),
        ("/cafe", "/cafe"),
        ("/deadbeef", "/deadbeef"),
        ("/facade/decade/added", "/facade/decade/added"),
        ("/reports/2024-05-01", "/reports/{date}"),
        ("/people/ann.smith@example.com/posts", "/people/{email}/posts"),
        ("/people/ann%40example.com", "/people/{email}"),
        ("/reset/dGhpcyBpcyBhIHRva2VuIQ9xZ3", "/reset/{token}"),
        ("/s/Zx8_kP2-qW9vL4mN7tR1", "/s/{token}"),
        ("/blog/release-notes-for-version-2024", "/blog/release-notes-for-version-2024"),
        ("/rpc/getUserPreferencesById", "/rpc/getUserPreferencesById"),
        ("/auth/oauth2CallbackHandler", "/auth/oauth2CallbackHandler"),
        ("/users/17/", "/users/{id}/"),
        ("//double//17", "//double//{id}"),
        ("/cart;jsessionid=ABC123/items", "/cart/items"),
        ("http://example.com:8080/users/5?q=1", "/users/{id}"),
        ("https://example.com", "/"),
        ("*", "*"),
    ],
)
def test_templates(target: str, expected: str) -> None:
    assert route("GET", target) == f"GET {expected}"


def test_method_is_uppercased_and_bytes_are_accepted() -> None:
    assert route(b"post", b"/a/1") == "POST /a/{id}"


def test_untrusted_bytes_are_made_printable() -> None:
    assert route("GET", b"/a\x1b[31m/\xff") == "GET /a\\x1b[31m/\\xff"
    assert printable("a\u202eb\nc") == "a\\u202eb\\x0ac"


def test_classify_segment_keeps_names() -> None:
    for name in ["users", "v2", "API", "index.html", "me", "search", "2fa"]:
        assert classify_segment(name) is None, name


def test_explicit_patterns_win() -> None:
    router = Router(["GET /articles/{slug}", "/files/{name}/raw"])
    assert router("GET", "/articles/hello-world?x=1") == "GET /articles/{slug}"
    assert router("POST", "/articles/hello-world") == "POST /articles/hello-world"
    assert router("PUT", "/files/a.txt/raw") == "PUT /files/{name}/raw"
    assert router("GET", "/users/4") == "GET /users/{id}"


@pytest.mark.parametrize("bad", ["articles/{x}", "GET /a/{x}y", "GET /a/x}"])
def test_bad_patterns(bad: str) -> None:
    with pytest.raises(ConfigError, match="bad route pattern"):
        Router([bad])
