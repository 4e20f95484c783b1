"""Encode and decode trafficmirror events: Avro, in one of two wire formats.

Avro single-object encoding by default (`C3 01`, the 8-byte CRC-64-AVRO
fingerprint of the writer schema, then the binary body), so a consumer decodes
any version it ships without a registry; Confluent Schema Registry framing
(`00`, the 4-byte big-endian schema id, the body) when a registry URL is set.
Decoding resolves whichever known version wrote a record into the newest, so
old recordings stay replayable, and a decoded record has every field of its
type in `schemas.records` (`decode_exchange()`, `decode_result()`). Schemas
are parsed once per process; encoding uses a writer generated once per schema
(`schemas.writer`), since the recorder encodes on the proxy's event loop.
"""

from __future__ import annotations

import io
import json
import re
import struct
import threading
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.records import Alert, HttpExchange, ReplayResult, ReplaySession
from schemas.writer import Unsupported, Write, compile_writer
from trafficmirror.plumbing.errors import ConfigError, DecodeError

SCHEMA_DIR = Path(__file__).resolve().parent
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
REGISTRY_MAGIC = b"\x00"
_VERSION_RE = re.compile(r"^(?P<name>[a-z_]+)\.v(?P<version>\d+)\.avsc$")


@lru_cache(maxsize=None)
def available_versions(name: str) -> tuple[int, ...]:
    """Versions shipped for schema `name`, oldest first."""
    versions = []
    for path in SCHEMA_DIR.glob(f"{name}.v*.avsc"):
        match = _VERSION_RE.match(path.name)
        if match and match["name"] == name:
            versions.append(int(match["version"]))
    if not versions:
        raise ConfigError(f"no schema named {name!r} in {SCHEMA_DIR}")
    return tuple(sorted(versions))


@lru_cache(maxsize=None)
def _writer_of(name: str, version: int) -> Write | None:
    try:
        return compile_writer(load_schema(name, version))
    except Unsupported:
        return None


@lru_cache(maxsize=None)
def load_schema(name: str, version: int | None = None) -> dict[str, Any]:
    """The parsed schema `name` at `version` (default: newest)."""
    if version is None:
        version = available_versions(name)[-1]
    path = SCHEMA_DIR / f"{name}.v{version}.avsc"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"schema {name} v{version} does not exist") from None
    return _parse(raw)


def _parse(raw: Any) -> dict[str, Any]:
    return cast(dict[str, Any], parse_schema(raw, _write_hint=True))


def schema_fingerprint(parsed: Mapping[str, Any]) -> bytes:
    """The 8-byte CRC-64-AVRO fingerprint as written in single-object encoding."""
    canonical = to_parsing_canonical_form(cast(dict[str, Any], parsed))
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


class Encoded(NamedTuple):
    """An encoded event with the Kafka headers that describe it.

    A tuple: it is made once per recorded exchange, on the proxy's event loop,
    where a frozen dataclass was measurably slower to build.
    """

    value: bytes
    headers: list[tuple[str, bytes]]


class Codec:
    """Encoder/decoder for one schema family (`http_exchange`, ...).

    Records are written with `write_version` (default: the newest) and always
    read into the newest version. `extra_writers` lets a caller teach the decoder
    writer schemas that are not
    shipped as files (tests use it to simulate records from older versions).
    With `registry_url`, encoding registers the schema under `subject` and
    writes Confluent framing; decoding understands both formats either way.
    """

    def __init__(
        self,
        name: str = "http_exchange",
        *,
        write_version: int | None = None,
        registry_url: str | None = None,
        subject: str | None = None,
        extra_writers: list[dict[str, Any]] | None = None,
        registry_client: Any = None,
    ) -> None:
        self.name = name
        self.version = write_version or available_versions(name)[-1]
        self.schema = load_schema(name)
        self.write_schema = load_schema(name, self.version)
        self.fingerprint = schema_fingerprint(self.write_schema)
        self._prefix = SINGLE_OBJECT_MAGIC + self.fingerprint
        self._write = _writer_of(name, self.version)
        self._writers: dict[bytes, dict[str, Any]] = {}
        for version in available_versions(name):
            parsed = load_schema(name, version)
            self._writers[schema_fingerprint(parsed)] = parsed
        # Records written with the reader's own schema must find that very object:
        # `_read` skips schema resolution (which costs about as much as the
        # decoding itself) only when the writer *is* the reader.
        self._writers[schema_fingerprint(self.schema)] = self.schema
        for raw in extra_writers or []:
            parsed = _parse(raw)
            self._writers[schema_fingerprint(parsed)] = parsed
        self._registry = registry_client
        if registry_url and self._registry is None:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            self._registry = SchemaRegistryClient({"url": registry_url})
        self._subject = subject
        self._registry_id: int | None = None
        self._registry_schemas: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        encoding = "confluent" if self._registry is not None and subject else "single-object"
        name = self.write_schema["name"]
        self.content_type = (
            f"application/avro; schema={name}; v={self.version}; encoding={encoding}"
        )
        self._headers = [
            ("content-type", self.content_type.encode()),
            ("trafficmirror-schema-fingerprint", self.fingerprint.hex().encode()),
        ]

    # -- encoding ---------------------------------------------------------------

    def encode(self, record: Mapping[str, Any]) -> Encoded:
        """Encode one record (an `HttpExchange`, a `ReplayResult` ...).

        Raises ValueError/TypeError if it does not fit the schema. Fields with a
        default may be left out.
        """
        if self._registry is not None and self._subject:
            prefix = REGISTRY_MAGIC + struct.pack(">I", self._registered_id())
        else:
            prefix = self._prefix
        write = self._write
        if write is None:
            stream = io.BytesIO()
            stream.write(prefix)
            schemaless_writer(stream, self.write_schema, record)
            return Encoded(stream.getvalue(), self._headers)
        buf = bytearray(prefix)
        try:
            write(buf, record)
        except KeyError as exc:
            raise ValueError(f"no value and no default for {exc.args[0]}") from None
        except (AttributeError, struct.error) as exc:
            raise TypeError(f"record does not fit {self.write_schema['name']}: {exc}") from None
        return Encoded(bytes(buf), self._headers)

    def _registered_id(self) -> int:
        if self._registry_id is None:
            from confluent_kafka.schema_registry import Schema

            with self._lock:
                if self._registry_id is None:
                    canonical = to_parsing_canonical_form(self.write_schema)
                    self._registry_id = int(
                        self._registry.register_schema(self._subject, Schema(canonical, "AVRO"))
                    )
        return self._registry_id

    # -- decoding ---------------------------------------------------------------

    def decode(self, data: bytes | None) -> dict[str, Any]:
        """Decode one record written by any known version, resolved to the current one."""
        if not data:
            raise DecodeError("empty record")
        if data[:2] == SINGLE_OBJECT_MAGIC:
            if len(data) < 10:
                raise DecodeError("truncated single-object header")
            fp = bytes(data[2:10])
            writer = self._writers.get(fp)
            if writer is None:
                raise DecodeError(f"unknown schema fingerprint {fp.hex()}")
            return self._read(data, 10, writer)
        if data[:1] == REGISTRY_MAGIC and len(data) >= 5:
            (schema_id,) = struct.unpack(">I", data[1:5])
            return self._read(data, 5, self._registry_schema(schema_id))
        raise DecodeError(f"not a trafficmirror event (starts with {bytes(data[:2]).hex()})")

    # `decode` under the name of the type it gives for this codec's schema family,
    # so the caller's data is typed. The very same function at run time: fastavro
    # gives plain dicts, which is what a TypedDict is, and the replay decodes on
    # its hot path, where even a wrapper's call would be paid for every record.
    if TYPE_CHECKING:

        def decode_exchange(self, data: bytes | None) -> HttpExchange:
            """`decode()` of a `Codec("http_exchange")`: a recorded exchange."""
            ...

        def decode_result(self, data: bytes | None) -> ReplayResult:
            """`decode()` of a `Codec("replay_result")`: the outcome of one replay."""
            ...

        def decode_session(self, data: bytes | None) -> ReplaySession:
            """`decode()` of a `Codec("replay_session")`: one session revision."""
            ...

        def decode_alert(self, data: bytes | None) -> Alert:
            """`decode()` of a `Codec("alert")`: one finding of the monitor."""
            ...

    else:
        decode_exchange = decode_result = decode_session = decode_alert = decode

    def _read(self, data: bytes, offset: int, writer: dict[str, Any]) -> dict[str, Any]:
        stream = io.BytesIO(data)
        stream.seek(offset)
        reader = None if writer is self.schema else self.schema
        try:
            record = cast(dict[str, Any], schemaless_reader(stream, writer, reader))
        except Exception as exc:  # fastavro raises many kinds on corrupt input
            raise DecodeError(f"corrupt Avro body: {type(exc).__name__}: {exc}") from exc
        if stream.tell() != len(data):
            raise DecodeError(f"{len(data) - stream.tell()} trailing bytes after the Avro body")
        return record

    def _registry_schema(self, schema_id: int) -> dict[str, Any]:
        cached = self._registry_schemas.get(schema_id)
        if cached is not None:
            return cached
        if self._registry is None:
            raise DecodeError(
                f"record uses schema registry id {schema_id} but no --schema-registry-url is set"
            )
        try:
            schema = self._registry.get_schema(schema_id)
            parsed = _parse(json.loads(schema.schema_str))
        except Exception as exc:
            raise DecodeError(
                f"cannot fetch schema id {schema_id} from the registry: {exc}"
            ) from exc
        fp = schema_fingerprint(parsed)
        # Use the identical shipped object when we know it, so resolution is skipped.
        parsed = self._writers.get(fp, parsed)
        self._registry_schemas[schema_id] = parsed
        return parsed
