"""Descriptors by gRPC server reflection, from a real grpcio server (`--proto-reflection`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from replayer.comparing.grpc import GrpcCall
from replayer.comparing.protodesc import ProtoDescriptors
from replayer.comparing.reflection import descriptors_by_reflection
from replayer.comparing.responses import ResponseView, compare
from tests.grpcapp import Messages, UsersServer, compile_proto
from tests.support import free_port
from trafficmirror.plumbing.errors import ConfigError


@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_proto(tmp_path_factory.mktemp("grpc-reflection-proto"))


@pytest.fixture(scope="module")
def reflecting(descriptor_set: Path) -> Iterator[UsersServer]:
    with UsersServer(Messages.load(descriptor_set), reflection=True) as server:
        yield server


def test_reflection_gives_what_the_descriptor_set_gives(
    reflecting: UsersServer, descriptor_set: Path
) -> None:
    reflected = descriptors_by_reflection(reflecting.url)
    from_file = ProtoDescriptors.load(descriptor_set)
    assert sorted(reflected.methods) == sorted(from_file.methods)
    assert not any("reflection" in path for path in reflected.methods)
    # The reflected types decode the service's messages field by field.
    m = reflecting.messages
    body = m.reply(user=m.user(name="ada", id=1), note="ok").SerializeToString()
    changed = m.reply(user=m.user(name="eve", id=1), note="ok").SerializeToString()

    def view(payload: bytes) -> ResponseView:
        frame = b"\x00" + len(payload).to_bytes(4, "big") + payload
        return ResponseView.of(200, [("content-type", "application/grpc")], frame)

    call = GrpcCall("/shop.v1.Users/GetUser", reflected.method("/shop.v1.Users/GetUser"))
    [diff] = compare(view(body), view(changed), call=call)
    assert (diff.path, diff.production, diff.shadow) == ("messages[0].user.name", '"ada"', '"eve"')


def test_a_server_without_reflection_is_a_one_line_error(descriptor_set: Path) -> None:
    with UsersServer(Messages.load(descriptor_set)) as plain:
        with pytest.raises(ConfigError, match="UNIMPLEMENTED.*reflection service") as failed:
            descriptors_by_reflection(plain.url)
    assert "\n" not in str(failed.value)


def test_nothing_listening_times_out_in_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError, match="no gRPC server answered within 1 s"):
        descriptors_by_reflection(url, timeout=1.0)


@pytest.mark.parametrize("url", ["ftp://x", "http://", "http://h:99999", "http://h/p"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        descriptors_by_reflection(url)
