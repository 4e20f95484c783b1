"""The generated Avro writer: byte for byte what fastavro writes, for every schema we ship."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import Codec, available_versions, load_schema
from schemas.writer import Unsupported, compile_writer, write_long
from tests.schemas.test_codec import full_event

SCHEMAS = [
    (name, version)
    for name in ("http_exchange", "replay_result")
    for version in available_versions(name)
]


def fastavro_bytes(schema: dict[str, Any], record: Any) -> bytes:
    stream = io.BytesIO()
    schemaless_writer(stream, schema, record)
    return stream.getvalue()


def ours(schema: dict[str, Any], record: Any) -> bytes:
    out = bytearray()
    compile_writer(schema)(out, record)
    return bytes(out)


def datum(schema: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Any valid datum of a fastavro-parsed schema (what our schemas use)."""
    if isinstance(schema, list):
        return st.one_of(*(datum(branch, named) for branch in schema))
    if isinstance(schema, str):
        if schema in named:
            return st.deferred(lambda: datum(named[schema], named))
        kind = schema
    elif isinstance(schema["type"], dict | list):
        return datum(schema["type"], named)
    else:
        kind = schema["type"]
    simple = {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(-(2**31), 2**31 - 1),
        # Both ends and the precomputed small range of the writer.
        "long": st.integers(-(2**63), 2**63 - 1) | st.integers(-20_000, 20_000),
        "double": st.floats(allow_nan=False),
        "string": st.text(),
        "bytes": st.binary(),
    }
    if kind in simple:
        return simple[kind]
    if kind == "array":
        return st.lists(datum(schema["items"], named), max_size=6)
    if kind == "record":
        return st.fixed_dictionaries(
            {field["name"]: datum(field["type"], named) for field in schema["fields"]}
        )
    raise AssertionError(f"no strategy for {schema!r}")


@pytest.mark.parametrize(("name", "version"), SCHEMAS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_same_bytes_as_fastavro(name: str, version: int, data: st.DataObject) -> None:
    schema = load_schema(name, version)
    record = data.draw(datum(schema, schema["__named_schemas"]))
    assert ours(schema, record) == fastavro_bytes(schema, record)


def test_full_and_minimal_events() -> None:
    schema = load_schema("http_exchange")
    event = full_event()
    assert ours(schema, event) == fastavro_bytes(schema, event)
    # Fields with defaults left out are written as their defaults, as fastavro does.
    minimal = {k: v for k, v in event.items() if k not in ("request_end_us", "server", "error")}
    minimal["request"] = {k: v for k, v in event["request"].items() if k != "trailers"}
    assert ours(schema, minimal) == fastavro_bytes(schema, minimal)


def test_codec_encodes_with_it_and_decodes_back() -> None:
    codec = Codec()
    event = full_event()
    encoded = codec.encode(event).value
    assert encoded[10:] == fastavro_bytes(codec.write_schema, event)
    assert codec.decode(encoded) == codec.decode(codec._prefix + encoded[10:])


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda e: e.pop("id"), ValueError),  # required, no default
        (lambda e: e.update(id=b"bytes"), TypeError),
        (lambda e: e.update(path="text"), TypeError),
        (lambda e: e.update(request_start_us="1"), TypeError),
        (lambda e: e.update(request_start_us=2**63), ValueError),
        (lambda e: e.update(client=None), TypeError),
        (lambda e: e["recorder"].update(sampling_rate="x"), TypeError),
        (lambda e: e["request"].update(headers=None), TypeError),
    ],
)
def test_bad_records_raise_like_fastavro(change: Any, error: type[Exception]) -> None:
    event = full_event()
    change(event)
    with pytest.raises(error):
        Codec().encode(event)
    with pytest.raises((ValueError, TypeError, OverflowError)):  # fastavro refuses it too
        fastavro_bytes(load_schema("http_exchange"), event)


def test_long_edges() -> None:
    edges = [0, 1, -1, 63, -64, 64, 8191, 8192, -8193, 2**62, 2**63 - 1, -(2**63)]
    # Around every length of the varint (7-bit groups) and of the 14-bit steps.
    for bits in range(1, 64):
        edges += [2 ** (bits - 1) - 1, 2 ** (bits - 1), -(2 ** (bits - 1)), -(2 ** (bits - 1)) - 1]
    edges += [1_764_600_000_123_456, -1_764_600_000_123_456]  # microsecond timestamps
    for n in edges:
        out = bytearray()
        write_long(out, n)
        assert bytes(out) == fastavro_bytes(parse_schema("long"), n), n
    out = bytearray()
    write_long(out, 2.7)  # fastavro cuts floats
    assert bytes(out) == b"\x04"


def test_what_it_does_not_compile_falls_back() -> None:
    with pytest.raises(Unsupported):
        compile_writer(parse_schema(["null", "string", "long"]))
    with pytest.raises(Unsupported):
        compile_writer(parse_schema({"type": "long", "logicalType": "timestamp-millis"}))
    codec = Codec()
    fast = codec.encode(full_event()).value
    codec._write = None  # as for a schema the writer cannot compile
    assert codec.encode(full_event()).value == fast


def test_enum_fixed_map_and_float() -> None:
    schema = parse_schema(
        {
            "type": "record",
            "name": "Other",
            "fields": [
                {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
                {"name": "f", "type": {"type": "fixed", "name": "F", "size": 3}},
                {"name": "m", "type": {"type": "map", "values": "long"}},
                {"name": "x", "type": "float"},
                {"name": "again", "type": "E"},
            ],
        }
    )
    record = {"e": "B", "f": b"abc", "m": {"k": 1, "é": -300}, "x": 1.5, "again": "A"}
    assert ours(schema, record) == fastavro_bytes(schema, record)
    with pytest.raises(ValueError):
        ours(schema, {**record, "e": "C"})
    with pytest.raises(ValueError):
        ours(schema, {**record, "f": b"ab"})
