"""Protobuf descriptors for comparing gRPC messages field by field (`--proto-descriptor-set`).

The user gives a descriptor set, the file `protoc --include_imports
--descriptor_set_out=FILE` writes (a serialised `FileDescriptorSet`).
`ProtoDescriptors.load()` reads it once into a private descriptor pool and
indexes every method of every service by the path gRPC sends it under,
`/package.Service/Method`, with its input and output message classes (made by
protobuf's message factory: no generated code). `MethodTypes.decode()` turns
one serialised message into its JSON mapping (field names as in the .proto),
which the comparison walks like a JSON body. Every failure to load is one
`ConfigError` line naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError

from trafficmirror.plumbing.errors import ConfigError


@dataclass(frozen=True, slots=True)
class MethodTypes:
    """One RPC: its path, its message classes and whether each side streams."""

    path: str
    input_type: Any
    output_type: Any
    client_streaming: bool
    server_streaming: bool

    def decode(self, data: bytes, *, output: bool = True) -> Any:
        """The JSON mapping of one serialised message of the output (or input) type.

        Raises `ValueError` when the bytes are not a message of that type, or it
        holds what the descriptors cannot map (an `Any` of an unknown type).
        """
        cls = self.output_type if output else self.input_type
        try:
            message = cls.FromString(data)
        except DecodeError as exc:
            raise ValueError(f"not a {cls.DESCRIPTOR.full_name}: {exc}") from None
        try:
            return json_format.MessageToDict(message, preserving_proto_field_name=True)
        except Exception as exc:  # an Any of a type the descriptors lack, ...: TypeError & co
            raise ValueError(f"cannot map a {cls.DESCRIPTOR.full_name}: {exc}") from None

    def reserialized(self, data: bytes) -> tuple[bytes, bytes]:
        """An output message re-serialised (deterministic): whole, and without the
        fields the descriptors do not define ("unknown fields"). Equal when it has none.
        """
        whole = self.output_type.FromString(data)
        known = self.output_type.FromString(data)
        known.DiscardUnknownFields()
        return whole.SerializeToString(deterministic=True), known.SerializeToString(
            deterministic=True
        )


class ProtoDescriptors:
    """The methods of a descriptor set, by gRPC path (`/package.Service/Method`)."""

    def __init__(self, methods: dict[str, MethodTypes], source: str = "") -> None:
        self.methods = methods
        self.source = source

    def method(self, path: str) -> MethodTypes | None:
        """The method gRPC calls at `path` (the request path, query ignored), or None."""
        return self.methods.get(path.split("?", 1)[0])

    @classmethod
    def load(cls, path: str | Path) -> ProtoDescriptors:
        """Read a descriptor set file; `ConfigError` (one line) if it cannot be used."""
        name = str(path)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read it: {exc.strerror or exc}") from None
        return cls.parse(data, name)

    @classmethod
    def parse(cls, data: bytes, name: str = "descriptor set") -> ProtoDescriptors:
        """A descriptor set from its bytes (`load` without the file)."""
        hint = "expected the output of protoc --include_imports --descriptor_set_out=FILE"
        try:
            files = descriptor_pb2.FileDescriptorSet.FromString(data)
        except DecodeError:
            raise ConfigError(f"{name}: not a protobuf descriptor set ({hint})") from None
        pool = descriptor_pool.DescriptorPool()
        for proto in files.file:
            try:
                pool.Add(proto)
            except Exception as exc:  # TypeError, KeyError ... from the pool, worded variously
                raise ConfigError(f"{name}: cannot load {proto.name}: {exc} ({hint})") from None
        methods: dict[str, MethodTypes] = {}
        for proto in files.file:
            prefix = f"{proto.package}." if proto.package else ""
            for service in proto.service:
                for method in service.method:
                    try:
                        input_type = pool.FindMessageTypeByName(method.input_type.lstrip("."))
                        output_type = pool.FindMessageTypeByName(method.output_type.lstrip("."))
                    except KeyError as exc:
                        raise ConfigError(
                            f"{name}: {service.name}.{method.name}: unknown type {exc} ({hint})"
                        ) from None
                    path = f"/{prefix}{service.name}/{method.name}"
                    methods[path] = MethodTypes(
                        path=path,
                        input_type=message_factory.GetMessageClass(input_type),
                        output_type=message_factory.GetMessageClass(output_type),
                        client_streaming=method.client_streaming,
                        server_streaming=method.server_streaming,
                    )
        if not methods:
            raise ConfigError(f"{name}: the descriptor set defines no gRPC service")
        return cls(methods, name)
