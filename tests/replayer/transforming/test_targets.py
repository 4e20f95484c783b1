"""Target map: each recorded authority to its own shadow; the rest to --target or skipped."""

from __future__ import annotations

import pytest

from replayer.models import Skipped, Target
from replayer.transforming.targets import Routes, authority_key, event_authority, parse_mapping
from tests.replayer.transforming.helpers import event
from trafficmirror.plumbing.errors import ConfigError

SHOP = "http://127.0.0.1:8081"
API = "http://127.0.0.1:8082"
API_TLS = "http://127.0.0.1:8083"


def routes(default: str | None, *specs: str) -> Routes:
    return Routes(
        Target.parse(default) if default else None,
        tuple(parse_mapping(s, "--target-map") for s in specs),
    )


def origin(r: Routes, authority: str, scheme: str = "http") -> str:
    ev = event(authority=authority)
    ev["scheme"] = scheme
    return r.target_for(ev).origin


def test_authorities_compare_without_case_trailing_dot_or_brackets() -> None:
    assert authority_key("Shop.Example.COM.") == ("shop.example.com", None)
    assert authority_key("shop:8080") == ("shop", 8080)
    assert authority_key("shop", "https") == ("shop", 443)
    assert authority_key("[::1]:9000") == ("::1", 9000)


def test_a_key_without_a_port_matches_any_port_and_one_with_a_port_that_port_only() -> None:
    r = routes(
        None, f"shop.example.com={SHOP}", f"api.example.com={API}", f"api.example.com:443={API_TLS}"
    )
    assert origin(r, "SHOP.example.com") == SHOP
    assert origin(r, "shop.example.com:9999") == SHOP
    assert origin(r, "api.example.com:8080") == API
    # An https event without a port is on 443: the key with the port wins.
    assert origin(r, "api.example.com", "https") == API_TLS
    assert origin(r, "api.example.com:443") == API_TLS


def test_unmapped_authorities_are_skipped_without_a_default_target() -> None:
    r = routes(None, f"shop.example.com={SHOP}")
    with pytest.raises(Skipped) as caught:
        origin(r, "other.example.com")
    assert caught.value.reason == "unmapped-authority"
    assert "other.example.com" in str(caught.value)
    assert r.describe() == f"shop.example.com={SHOP}, the rest skipped"


def test_with_a_default_target_unmapped_authorities_go_there() -> None:
    r = routes("http://default:9000", f"shop.example.com={SHOP}")
    assert origin(r, "other.example.com") == "http://default:9000"
    assert origin(r, "shop.example.com") == SHOP
    assert r.describe() == f"shop.example.com={SHOP}, the rest to http://default:9000"


def test_without_a_map_everything_goes_to_the_target() -> None:
    r = routes("http://default:9000")
    assert origin(r, "anything") == "http://default:9000"
    assert r.describe() == "http://default:9000"


def test_the_recorded_host_header_stands_in_for_a_missing_authority() -> None:
    ev = event(authority="", headers=[("host", "api.example.com")])
    assert event_authority(ev) == "api.example.com"
    assert routes(None, f"api.example.com={API}").target_for(ev).origin == API


def test_later_entries_win_so_the_command_line_overrides_the_file() -> None:
    r = routes(None, f"shop.example.com={SHOP}", f"SHOP.example.com={API}")
    assert origin(r, "shop.example.com") == API


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("shop", "--target-map: 'shop' is not AUTHORITY=URL"),
        ("=http://x", "--target-map: '=http://x' is not AUTHORITY=URL"),
        ("shop/x=http://x", "--target-map: 'shop/x' is not an authority"),
        ("shop:0x=http://x", "--target-map: 'shop:0x' has a bad port"),
        ("shop=http://x/api", "--target-map: target 'http://x/api' has a path"),
    ],
)
def test_bad_mappings_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_mapping(spec, "--target-map")
    assert str(caught.value).startswith(message)


def test_routes_need_a_target_or_a_map() -> None:
    with pytest.raises(ConfigError, match="give --target"):
        Routes(None, ())
