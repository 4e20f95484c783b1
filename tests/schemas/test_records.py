"""The TypedDicts of `schemas.records` match the newest `.avsc` of their schema, field for field.

Names, order, required keys and types, nested records included, so a schema
change that forgets the Python side (or the other way round) fails here.
"""

from __future__ import annotations

import json
import types
from typing import Any, TypedDict, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest

from schemas.codec import SCHEMA_DIR, Codec, available_versions
from schemas.records import (
    KIND_HTTP,
    KIND_WEBSOCKET_END,
    KIND_WEBSOCKET_MESSAGE,
    WEBSOCKET_KINDS,
    HttpExchange,
    ReplayResult,
    ReplaySession,
)
from tests.replayer.events import make_event

PRIMITIVES: dict[str, type] = {
    "string": str,
    "bytes": bytes,
    "int": int,
    "long": int,
    "float": float,
    "double": float,
    "boolean": bool,
}


def newest(name: str) -> dict[str, Any]:
    """The newest schema of `name` as written (named types not yet expanded)."""
    version = available_versions(name)[-1]
    raw: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.v{version}.avsc").read_text())
    return raw


def check(hint: Any, avro: Any, named: dict[str, Any], where: str) -> None:
    """Assert that the Python type `hint` is what fastavro reads for the Avro type `avro`."""
    if isinstance(avro, list):
        assert "null" in avro and len(avro) == 2, f"{where}: only unions with null are typed"
        assert get_origin(hint) in (Union, types.UnionType), f"{where}: {hint} is not optional"
        assert type(None) in get_args(hint), f"{where}: {hint} is not optional"
        (inner,) = [arg for arg in get_args(hint) if arg is not type(None)]
        (branch,) = [branch for branch in avro if branch != "null"]
        check(inner, branch, named, where)
        return
    if isinstance(avro, str) and avro in named:
        avro = named[avro]
    if isinstance(avro, dict) and avro["type"] == "record":
        named[avro["name"]] = avro
        assert is_typeddict(hint), f"{where}: {hint} is not a TypedDict for {avro['name']}"
        hints = get_type_hints(hint)
        fields = [field["name"] for field in avro["fields"]]
        assert list(hints) == fields, f"{where} ({avro['name']}): keys differ from the schema"
        assert hint.__required_keys__ == frozenset(fields), f"{where}: every key is required"
        for field in avro["fields"]:
            check(hints[field["name"]], field["type"], named, f"{where}.{field['name']}")
        return
    if isinstance(avro, dict) and avro["type"] == "array":
        assert get_origin(hint) is list, f"{where}: {hint} is not a list"
        check(get_args(hint)[0], avro["items"], named, f"{where}[]")
        return
    if isinstance(avro, dict):
        avro = avro["type"]
    assert avro in PRIMITIVES, f"{where}: no Python type for Avro {avro!r}"
    assert hint is PRIMITIVES[avro], f"{where}: {hint} is not {PRIMITIVES[avro].__name__}"


@pytest.mark.parametrize(
    ("name", "typed"),
    [
        ("http_exchange", HttpExchange),
        ("replay_result", ReplayResult),
        ("replay_session", ReplaySession),
    ],
)
def test_typed_dicts_match_the_newest_schema(name: str, typed: type) -> None:
    check(typed, newest(name), {}, name)


def test_kind_constants_are_the_kinds_the_schema_names() -> None:
    (kind,) = [f for f in newest("http_exchange")["fields"] if f["name"] == "kind"]
    assert kind["default"] == KIND_HTTP
    assert WEBSOCKET_KINDS == (KIND_WEBSOCKET_MESSAGE, KIND_WEBSOCKET_END)
    # The doc says what each kind holds: "http (...), websocket_message (...) or ...".
    for value in (KIND_HTTP, *WEBSOCKET_KINDS):
        assert f"{value} (" in kind["doc"], value


class _Address(TypedDict):
    host: str


class _Broken(TypedDict):
    id: str
    client: _Address


def test_the_check_catches_a_drift() -> None:
    schema = {
        "type": "record",
        "name": "Broken",
        "fields": [
            {"name": "id", "type": "string"},
            {
                "name": "client",
                "type": {
                    "type": "record",
                    "name": "Address",
                    "fields": [
                        {"name": "host", "type": "string"},
                        {"name": "port", "type": "int"},
                    ],
                },
            },
        ],
    }
    with pytest.raises(AssertionError, match=r"Broken.client \(Address\): keys differ"):
        check(_Broken, schema, {}, "Broken")


def test_decoded_records_have_every_key_of_their_type() -> None:
    codec = Codec()
    event = codec.decode_exchange(codec.encode(make_event()).value)
    assert set(event) == set(get_type_hints(HttpExchange))
    assert set(event["request"]) == set(get_type_hints(get_type_hints(HttpExchange)["request"]))
