"""gRPC server reflection: the descriptors `protodesc` needs, asked from a running server.

`--proto-reflection URL` instead of `--proto-descriptor-set FILE`: at start,
the replayer asks the server at URL (usually the shadow: the replayer never
talks to production) for its services through the standard reflection service
(`grpc.reflection.v1alpha.ServerReflection`), fetches the file of each service
and every file those import, and builds the same `ProtoDescriptors` a
descriptor set gives. It uses grpcio and grpcio-reflection (the `grpc` extra),
imported only when the option is given. Any failure is one `ConfigError` line.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from replayer.comparing.protodesc import ProtoDescriptors
from trafficmirror.plumbing.errors import ConfigError

#: The reflection service itself, left out of the services asked about.
_REFLECTION_PREFIX = "grpc.reflection."


def descriptors_by_reflection(url: str, timeout: float = 10.0) -> ProtoDescriptors:
    """The descriptors of every service the server at `url` (http:// or https://) reflects."""
    try:
        import grpc
        from google.protobuf import descriptor_pb2
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
            ProtoReflectionDescriptorDatabase,
        )
    except ImportError:
        raise ConfigError(
            "--proto-reflection needs grpcio and grpcio-reflection: "
            "pip install 'trafficmirror[grpc]'"
        ) from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(f"{url!r} is not an http:// or https:// URL of a gRPC server")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConfigError(f"{url!r} has a bad port") from None
    target = f"{parts.hostname}:{port}"
    # Straight to the server, like the replayer's transports: no *_proxy variables.
    options = (("grpc.enable_http_proxy", 0),)
    if parts.scheme == "https":
        channel: Any = grpc.secure_channel(target, grpc.ssl_channel_credentials(), options)
    else:
        channel = grpc.insecure_channel(target, options)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        database = ProtoReflectionDescriptorDatabase(channel)
        files: dict[str, Any] = {}
        for service in database.get_services():
            if not service.startswith(_REFLECTION_PREFIX):
                _collect(database, database.FindFileContainingSymbol(service), files)
    except grpc.FutureTimeoutError:
        raise ConfigError(f"{url}: no gRPC server answered within {timeout:g} s") from None
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "an error"
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        raise ConfigError(
            f"{url}: server reflection failed with {code}: {' '.join(str(detail).split())} "
            "(does the server offer the reflection service?)"
        ) from None
    except KeyError as exc:
        raise ConfigError(f"{url}: server reflection does not know {exc}") from None
    finally:
        channel.close()
    descriptor_set = descriptor_pb2.FileDescriptorSet(file=list(files.values()))
    return ProtoDescriptors.parse(descriptor_set.SerializeToString(), f"reflection of {url}")


def _collect(database: Any, proto: Any, files: dict[str, Any]) -> None:
    """Add `proto` to `files` after the files it imports (a descriptor pool needs that order)."""
    if proto.name in files:
        return
    for dependency in proto.dependency:
        if dependency not in files:
            _collect(database, database.FindFileByName(dependency), files)
    files[proto.name] = proto
