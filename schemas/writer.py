"""A fast Avro binary writer, generated once per schema.

The recorder encodes on mitmproxy's event loop, where fastavro's generic
`schemaless_writer` spends most of its time walking the schema and matching
union branches again for every record. `compile_writer` walks the schema once
and generates straight-line Python for it (one function per record type, the
way `dataclasses` generates `__init__`): several times faster, byte for byte
the same output (tests/schemas/test_writer.py compares the two). Only what our
schemas use is compiled; anything else raises `Unsupported` and the codec uses
fastavro for that schema (see `compile_writer` for what fits and what a datum
that does not fit raises).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

#: Appends the Avro encoding of one datum to the buffer.
Write = Callable[[bytearray, Any], None]

_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
#: `_LAST14[z]`: the varint of z < 2**14 (one or two bytes).
_LAST14 = [bytes([z]) if z < 0x80 else bytes([(z & 0x7F) | 0x80, z >> 7]) for z in range(1 << 14)]
#: `_MORE14[z]`: the low 14 bits of a longer varint, two bytes with the
#: continuation bit. A microsecond timestamp (8 varint bytes) is three of these
#: and one `_LAST14`: a quarter of the byte-at-a-time loop's steps, and the
#: timestamps were the largest part of encoding an event.
_MORE14 = [bytes([(z & 0x7F) | 0x80, (z >> 7) | 0x80]) for z in range(1 << 14)]
#: Varints of 0 <= n < _SMALL (lengths, ports, small counts: most longs in an
#: event) are looked up at once: `_POSITIVE[n]` is the zigzag varint of n (2n).
_SMALL = 1 << 13
_POSITIVE = _LAST14[::2]


class Unsupported(Exception):
    """The schema uses a construct this writer does not compile."""


def write_long(out: bytearray, n: int) -> None:
    """Append `n` as an Avro long (zigzag varint); a float is cut, as fastavro does."""
    if type(n) is not int:
        if not isinstance(n, (int, float)):
            raise TypeError(f"{type(n).__name__} is not an integer")
        n = int(n)
    if n >= 0:
        if n < _SMALL:
            out += _POSITIVE[n]
            return
        if n > _LONG_MAX:
            raise ValueError(f"{n} does not fit in an Avro long")
        z = n << 1
    elif n < _LONG_MIN:
        raise ValueError(f"{n} does not fit in an Avro long")
    else:
        z = (n << 1) ^ -1  # zigzag of a negative number
    while z >= 0x4000:  # three or more 7-bit groups left: the low two carry on
        out += _MORE14[z & 0x3FFF]
        z >>= 14
    out += _LAST14[z]


def _as_bytes(datum: Any) -> bytes:
    if isinstance(datum, (bytes, bytearray, memoryview)):
        return bytes(datum)
    raise TypeError(f"{type(datum).__name__} is not bytes")


def _not_null(datum: Any) -> None:
    raise ValueError(f"{datum!r} is not null")


def _not_symbol(datum: Any) -> None:
    raise ValueError(f"{datum!r} is not a symbol of the enum")


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "string", "bytes"})


def compile_writer(schema: Any, named: Mapping[str, Any] | None = None) -> Write:
    """The writer of a fastavro-parsed `schema` (`parse_schema` output).

    Named types are looked up in `named` (default: the schema's own
    `__named_schemas`). Compiles records, arrays, maps, the primitive types,
    enums, fixed, and unions of null with one other type; raises `Unsupported`
    for anything else (logical types, other unions). Writing a datum that does
    not fit raises `ValueError`, `TypeError`, `KeyError` (a field without a
    default is missing) or `AttributeError` (a string is not a `str`), which
    the codec reports as `ValueError`/`TypeError`. Like fastavro, the generated
    code checks no more than it needs to write correct bytes.
    """
    if named is None:
        named = schema.get("__named_schemas", {}) if isinstance(schema, dict) else {}
    return _Generator(named).build(schema)


class _Generator:
    """Emits Python source for a schema: one function per record, inline code for the rest."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named
        self.namespace: dict[str, Any] = {
            "_POSITIVE": _POSITIVE,
            "_SMALL": _SMALL,
            "_long": write_long,
            "_as_bytes": _as_bytes,
            "_not_null": _not_null,
            "_not_symbol": _not_symbol,
            "_double": struct.Struct("<d").pack,
            "_float": struct.Struct("<f").pack,
        }
        self.functions: dict[str, str] = {}  # record name -> generated function name
        self.sources: list[str] = []
        self.counter = 0

    def build(self, schema: Any) -> Write:
        lines = ["def _write_root(out, v0):"]
        self.emit(schema, "v0", lines, 1)
        self.sources.append("\n".join(lines))
        source = "\n\n".join(self.sources)
        exec(compile(source, "<avro writer>", "exec"), self.namespace)  # noqa: S102 (our own code)
        write: Write = self.namespace["_write_root"]
        write.__doc__ = source  # what runs, for whoever debugs it
        return write

    def var(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    def emit(self, schema: Any, value: str, lines: list[str], depth: int) -> None:
        """Append code that writes the datum in variable `value` to `out`."""
        pad = "    " * depth
        if isinstance(schema, list):
            self.emit_union(schema, value, lines, depth)
            return
        if isinstance(schema, dict):
            if "logicalType" in schema:
                raise Unsupported(f"logical type {schema['logicalType']}")
            kind = schema["type"]
        else:
            kind = schema
        if not isinstance(kind, str):
            self.emit(kind, value, lines, depth)
        elif kind == "null":
            lines.append(f"{pad}if {value} is not None: _not_null({value})")
        elif kind == "boolean":
            lines.append(f"{pad}out.append(1 if {value} else 0)")
        elif kind in ("int", "long"):
            lines.append(f"{pad}if type({value}) is int and 0 <= {value} < _SMALL:")
            lines.append(f"{pad}    out += _POSITIVE[{value}]")
            lines.append(f"{pad}else:")
            lines.append(f"{pad}    _long(out, {value})")
        elif kind in ("double", "float"):
            lines.append(f"{pad}out += _{kind}({value})")
        elif kind in ("string", "bytes"):
            raw, size = self.var(), self.var()
            if kind == "string":
                lines.append(f"{pad}{raw} = {value}.encode()")
            else:
                lines.append(f"{pad}{raw} = {value}")
                lines.append(f"{pad}if type({raw}) is not bytes: {raw} = _as_bytes({raw})")
            lines.append(f"{pad}{size} = len({raw})")
            lines.append(
                f"{pad}out += _POSITIVE[{size}] if {size} < _SMALL else _long_bytes({size})"
            )
            lines.append(f"{pad}out += {raw}")
            self.namespace.setdefault("_long_bytes", _long_bytes)
        elif kind in ("record", "error"):
            lines.append(f"{pad}{self.record(schema)}(out, {value})")
        elif kind == "array":
            count, item = self.var(), self.var()
            lines.append(f"{pad}{count} = len({value})")
            lines.append(f"{pad}if {count}:")
            lines.append(f"{pad}    _long(out, {count})")
            lines.append(f"{pad}    for {item} in {value}:")
            self.emit(schema["items"], item, lines, depth + 2)
            lines.append(f"{pad}out.append(0)")
        elif kind == "map":
            count, key, item = self.var(), self.var(), self.var()
            lines.append(f"{pad}{count} = len({value})")
            lines.append(f"{pad}if {count}:")
            lines.append(f"{pad}    _long(out, {count})")
            lines.append(f"{pad}    for {key}, {item} in {value}.items():")
            self.emit("string", key, lines, depth + 2)
            self.emit(schema["values"], item, lines, depth + 2)
            lines.append(f"{pad}out.append(0)")
        elif kind == "enum":
            symbols, index = f"_symbols_{len(self.namespace)}", self.var()
            self.namespace[symbols] = {s: i for i, s in enumerate(schema["symbols"])}
            lines.append(f"{pad}{index} = {symbols}.get({value})")
            lines.append(f"{pad}if {index} is None: _not_symbol({value})")
            lines.append(f"{pad}_long(out, {index})")
        elif kind == "fixed":
            size = schema["size"]
            lines.append(f"{pad}if len({value}) != {size}: raise ValueError('fixed size')")
            lines.append(f"{pad}out += _as_bytes({value})")
        elif kind in _PRIMITIVES:  # pragma: no cover (all handled above)
            raise Unsupported(kind)
        else:
            self.emit(self.lookup(kind), value, lines, depth)

    def lookup(self, name: str) -> Any:
        if name not in self.named:
            raise Unsupported(f"unknown named type {name}")
        return self.named[name]

    def emit_union(self, branches: list[Any], value: str, lines: list[str], depth: int) -> None:
        if len(branches) != 2 or "null" not in branches:
            raise Unsupported(f"union {branches!r}")
        pad = "    " * depth
        null_index = branches.index("null")
        lines.append(f"{pad}if {value} is None:")
        lines.append(f"{pad}    out.append({null_index * 2})")
        lines.append(f"{pad}else:")
        lines.append(f"{pad}    out.append({(1 - null_index) * 2})")
        self.emit(branches[1 - null_index], value, lines, depth + 1)

    def record(self, schema: dict[str, Any]) -> str:
        """The name of the generated function that writes records of `schema`."""
        name = schema.get("name") or f"anonymous{self.counter}"
        if name in self.functions:
            return self.functions[name]
        function = f"_write_{len(self.functions)}_{name.rsplit('.', 1)[-1]}"
        self.functions[name] = function  # before the fields: recursive types call it
        lines = [f"def {function}(out, datum):", "    get = datum.get"]
        for field in schema["fields"]:
            ftype = field["type"]
            value = self.var()
            fname = field["name"]
            if "default" in field:
                default = f"_default_{len(self.namespace)}"
                self.namespace[default] = field["default"]
                lines.append(f"    {value} = get({fname!r}, {default})")
            elif isinstance(ftype, list) and "null" in ftype:
                lines.append(f"    {value} = get({fname!r})")  # fastavro writes missing as null
            else:
                lines.append(f"    {value} = datum[{fname!r}]")
            self.emit(ftype, value, lines, 1)
        self.sources.append("\n".join(lines))
        return function


def _long_bytes(n: int) -> bytes:
    out = bytearray()
    write_long(out, n)
    return bytes(out)
