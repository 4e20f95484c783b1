"""The gRPC comparison: call status, trailers, message count and fields, descriptors.

Messages are real protobuf encodings of the test service's types, built from a
descriptor set protoc writes at test time (`tests.grpcapp`).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from replayer.comparing.grpc import GrpcCall, split_messages
from replayer.comparing.noise import build_rules
from replayer.comparing.protodesc import ProtoDescriptors
from replayer.comparing.responses import ResponseView, compare, compare_exchange
from tests.grpcapp import Messages, compile_proto
from tests.replayer.events import make_event
from trafficmirror.plumbing.errors import ConfigError

GET = "/shop.v1.Users/GetUser"
OK_TRAILERS = (("grpc-status", "0"), ("grpc-message", ""))


@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_proto(tmp_path_factory.mktemp("grpc-compare-proto"))


@pytest.fixture(scope="module")
def protos(descriptor_set: Path) -> ProtoDescriptors:
    return ProtoDescriptors.load(descriptor_set)


@pytest.fixture(scope="module")
def m(descriptor_set: Path) -> Messages:
    return Messages.load(descriptor_set)


def frame(payload: bytes, flag: int = 0) -> bytes:
    return struct.pack(">BI", flag, len(payload)) + payload


def reply(m: Messages, name: str = "ada", number: int = 1, note: str = "ok") -> bytes:
    message = m.reply(user=m.user(name=name, id=number, tags=["a"]), note=note)
    return frame(message.SerializeToString())


def view(
    body: bytes,
    trailers: Any = OK_TRAILERS,
    headers: Any = (("content-type", "application/grpc"),),
    **kwargs: Any,
) -> ResponseView:
    response = ResponseView.of(200, headers, body, trailers)
    for name, value in kwargs.items():
        setattr(response, name, value)
    return response


def paths(differences: list[Any]) -> list[tuple[str, str, str | None, str | None]]:
    return [(d.kind, d.path, d.production, d.shadow) for d in differences]


def test_split_messages_keeps_flags_and_the_cut_off_rest() -> None:
    body = frame(b"one") + frame(b"", 0) + frame(b"zz", 1) + frame(b"partial")[:6]
    frames, rest = split_messages(body)
    assert [(f.compressed, f.data) for f in frames] == [
        (False, b"one"),
        (False, b""),
        (True, b"zz"),
    ]
    assert rest == frame(b"partial")[:6]


def test_changed_field_named_with_descriptors(m: Messages, protos: ProtoDescriptors) -> None:
    call = GrpcCall(GET, protos.method(GET))
    production = view(reply(m) + reply(m, "bob", 2))
    shadow = view(reply(m) + reply(m, "BOB", 2))
    assert paths(compare(production, shadow, call=call)) == [
        ("message", "messages[1].user.name", '"bob"', '"BOB"')
    ]
    assert compare(production, view(production.body), call=call) == []


def test_without_descriptors_messages_compare_by_bytes(m: Messages) -> None:
    call = GrpcCall(GET)
    [diff] = compare(view(reply(m)), view(reply(m, "bob")), call=call)
    assert (diff.kind, diff.path) == ("message", "messages[0]")
    assert diff.production is not None and "bytes sha256:" in diff.production


def test_message_count_status_message_and_trailers(m: Messages, protos: ProtoDescriptors) -> None:
    call = GrpcCall(GET, protos.method(GET))
    production = view(reply(m), trailers=(*OK_TRAILERS, ("x-users-version", "1")))
    shadow = view(
        b"",
        trailers=(("grpc-status", "5"), ("grpc-message", "no%20user"), ("x-users-version", "2")),
    )
    assert paths(compare(production, shadow, call=call)) == [
        ("status", "grpc-status", "0 OK", "5 NOT_FOUND"),
        ("header", "grpc-message", "", "no user"),
        ("header", "trailers.x-users-version", "1", "2"),
        ("message", "messages.count", "1", "0"),
    ]


def test_trailers_only_answer_status_is_read_from_headers() -> None:
    """A failed call without body answers with one HEADERS frame holding grpc-status."""
    headers = (("content-type", "application/grpc"), ("grpc-status", "5"), ("grpc-message", "x"))
    production = view(b"", trailers=(), headers=headers)
    same = view(b"", trailers=(), headers=headers)
    assert compare(production, same, call=GrpcCall(GET)) == []
    # The same status in the shadow's trailers instead: no difference (the call's status is equal).
    moved = view(b"", trailers=(("grpc-status", "5"), ("grpc-message", "x")))
    assert compare(production, moved, call=GrpcCall(GET)) == []
    internal = view(b"", trailers=(), headers=(*headers[:1], ("grpc-status", "13")))
    assert paths(compare(production, internal, call=GrpcCall(GET))) == [
        ("status", "grpc-status", "5 NOT_FOUND", "13 INTERNAL"),
        ("header", "grpc-message", "x", None),
    ]


def test_noise_rules_apply_to_trailers_and_message_fields(
    m: Messages, protos: ProtoDescriptors
) -> None:
    rules = build_rules(ignore_headers=("x-users-*",), ignore_paths=("$.user.name",))
    call = GrpcCall(GET, protos.method(GET))
    production = view(reply(m), trailers=(*OK_TRAILERS, ("x-users-version", "1")))
    shadow = view(reply(m, "eve"), trailers=(*OK_TRAILERS, ("x-users-version", "2")))
    differences = compare(production, shadow, rules, call=call)
    assert [(d.path, d.noise) for d in differences] == [
        ("trailers.x-users-version", True),
        ("messages[0].user.name", True),
    ]


def test_compressed_messages_compare_by_bytes(m: Messages, protos: ProtoDescriptors) -> None:
    call = GrpcCall(GET, protos.method(GET))
    [diff] = compare(view(frame(b"\x1f\x8b..", 1)), view(frame(b"\x1f\x8b.!", 1)), call=call)
    assert diff.path == "messages[0]"
    assert diff.production is not None and diff.production.startswith("compressed, 4 bytes")


def test_cut_body_compares_complete_messages_only(m: Messages, protos: ProtoDescriptors) -> None:
    call = GrpcCall(GET, protos.method(GET))
    whole = reply(m) + reply(m, "bob") + reply(m, "cy")
    production = view(whole[: len(reply(m)) + 5], body_truncated=True, body_length=len(whole))
    assert compare(production, view(whole[: len(reply(m)) * 2]), call=call) == []
    differences = compare(production, view(reply(m, "zed")), call=call)
    assert paths(differences) == [("message", "messages[0].user.name", '"ada"', '"zed"')]


def test_undecodable_message_falls_back_to_bytes(m: Messages, protos: ProtoDescriptors) -> None:
    call = GrpcCall(GET, protos.method(GET))
    [diff] = compare(view(reply(m)), view(frame(b"\xff\xff\xff")), call=call)
    assert (diff.kind, diff.path) == ("message", "messages[0]")


def grpc_event(m: Messages, body: bytes, trailers: Any = OK_TRAILERS) -> dict[str, Any]:
    event = make_event(
        method="POST",
        path=GET,
        headers=[("content-type", "application/grpc"), ("te", "trailers")],
        body=frame(m.request(id=1).SerializeToString()),
        response_body=body,
    )
    message = event["response"]["message"]
    message["headers"] = [b"content-type", b"application/grpc"]
    message["trailers"] = [part.encode() for pair in trailers for part in pair]
    return event


def test_compare_exchange_dispatches_grpc_requests(m: Messages, protos: ProtoDescriptors) -> None:
    event = grpc_event(m, reply(m))
    shadow = view(reply(m, "bob"))
    assert paths(compare_exchange(event, shadow, protos=protos)) == [
        ("message", "messages[0].user.name", '"ada"', '"bob"')
    ]
    assert compare_exchange(event, view(reply(m)), protos=protos) == []
    # Without the trailers the shadow lost its status: that is a difference.
    lost = compare_exchange(event, view(reply(m), trailers=()), protos=protos)
    assert paths(lost)[0] == ("status", "grpc-status", "0 OK", None)


def test_baseline_noise_covers_message_fields(m: Messages, protos: ProtoDescriptors) -> None:
    event = grpc_event(m, reply(m, note="t1"))
    shadow = view(reply(m, "bob", note="t2"))
    baseline = view(reply(m, note="t3"))
    differences = compare_exchange(event, shadow, baseline=baseline, protos=protos)
    assert [(d.path, d.noise) for d in differences] == [
        ("messages[0].user.name", False),
        ("messages[0].note", True),
    ]


def test_http_exchanges_are_untouched() -> None:
    event = make_event(response_body=b'{"a": 1}')
    shadow = ResponseView.of(200, [("Content-Type", "application/json")], b'{"a": 2}')
    [diff] = compare_exchange(event, shadow)
    assert (diff.kind, diff.path) == ("body_json", "$.a")


def test_descriptor_set_methods(protos: ProtoDescriptors) -> None:
    assert sorted(protos.methods) == [
        "/shop.v1.Users/Chat",
        "/shop.v1.Users/Collect",
        "/shop.v1.Users/Fail",
        "/shop.v1.Users/GetUser",
        "/shop.v1.Users/ListUsers",
    ]
    listing = protos.method("/shop.v1.Users/ListUsers")
    assert listing is not None and listing.server_streaming and not listing.client_streaming
    assert protos.method("/other.Svc/Nope") is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it"),
        (b"\xff\xff\xff garbage", "not a protobuf descriptor set"),
        (b"", "defines no gRPC service"),
    ],
    ids=["missing", "garbage", "empty"],
)
def test_bad_descriptor_sets_are_one_line_errors(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "set.pb"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as failed:
        ProtoDescriptors.load(path)
    assert message in str(failed.value)
    assert "\n" not in str(failed.value)


def test_a_descriptor_set_without_its_imports_is_refused() -> None:
    files = descriptor_pb2.FileDescriptorSet()
    proto = files.file.add(name="a.proto", package="p", dependency=["missing.proto"])
    message = proto.message_type.add(name="M")
    message.field.add(name="x", number=1, type=11, type_name=".q.Other", label=1)
    proto.service.add(name="S").method.add(name="Do", input_type=".p.M", output_type=".p.M")
    with pytest.raises(ConfigError, match="missing.proto.*--include_imports"):
        ProtoDescriptors.parse(files.SerializeToString(), "a.pb")


def test_gzip_messages_are_inflated_then_compared_by_field(
    m: Messages, protos: ProtoDescriptors
) -> None:
    import gzip

    call = GrpcCall(GET, protos.method(GET))
    plain = m.reply(user=m.user(name="ada", id=1), note="ok").SerializeToString()
    changed = m.reply(user=m.user(name="eve", id=1), note="ok").SerializeToString()
    gzipped = (("content-type", "application/grpc"), ("grpc-encoding", "gzip"))
    production = view(frame(gzip.compress(plain), 1), headers=gzipped)
    # The shadow does not compress: the same message all the same (the header differs).
    same = compare(production, view(frame(plain)), call=call)
    assert paths(same) == [("header", "grpc-encoding", "gzip", None)]
    differs = compare(
        production, view(frame(gzip.compress(changed), 1), headers=gzipped), call=call
    )
    assert paths(differs) == [("message", "messages[0].user.name", '"ada"', '"eve"')]
    # An encoding that cannot be undone here: by bytes, and said so.
    snappy = (("content-type", "application/grpc"), ("grpc-encoding", "snappy"))
    [diff] = compare(
        view(frame(b"abc", 1), headers=snappy), view(frame(b"abd", 1), headers=snappy), call=call
    )
    assert diff.path == "messages[0]" and (diff.production or "").startswith("compressed")


def test_an_any_of_an_unknown_type_falls_back_to_bytes() -> None:
    """json_format cannot map it (TypeError): compared by bytes, not a failed comparison."""
    from google.protobuf import any_pb2

    files = descriptor_pb2.FileDescriptorSet()
    files.file.add().CopyFrom(
        descriptor_pb2.FileDescriptorProto.FromString(any_pb2.DESCRIPTOR.serialized_pb)
    )
    proto = files.file.add(
        name="a.proto", package="p", dependency=["google/protobuf/any.proto"], syntax="proto3"
    )
    message = proto.message_type.add(name="M")
    message.field.add(name="x", number=1, type=11, type_name=".google.protobuf.Any", label=1)
    proto.service.add(name="S").method.add(name="Do", input_type=".p.M", output_type=".p.M")
    method = ProtoDescriptors.parse(files.SerializeToString()).method("/p.S/Do")
    assert method is not None

    def body(value: bytes) -> bytes:
        payload = method.output_type()
        payload.x.type_url = "type.googleapis.com/q.Unknown"
        payload.x.value = value
        return frame(payload.SerializeToString())

    [diff] = compare(
        view(body(b"\x08\x01")), view(body(b"\x08\x02")), call=GrpcCall("/p.S/Do", method)
    )
    assert (diff.kind, diff.path) == ("message", "messages[0]")


def test_fields_the_descriptors_lack_are_compared_as_such(
    m: Messages, protos: ProtoDescriptors
) -> None:
    call = GrpcCall(GET, protos.method(GET))
    plain = m.reply(user=m.user(name="ada", id=1), note="ok").SerializeToString()
    extra = b"\x98\x06\x01"  # field 99 (varint 1): not in the .proto
    production = view(frame(plain))
    [diff] = compare(production, view(frame(plain + extra)), call=call)
    assert (diff.path, diff.production, diff.shadow) == (
        "messages[0]",
        "0 bytes of fields the descriptors lack",
        "3 bytes of fields the descriptors lack",
    )
    same = view(frame(plain + extra))
    assert compare(view(frame(plain + extra)), same, call=call) == []
    # Only the defined fields differ in their bytes (a tolerance made them equal): nothing said.
    loose = build_rules(tolerances=("1",))
    other = m.reply(user=m.user(name="ada", id=2), note="ok").SerializeToString()
    assert compare(view(frame(plain + extra)), view(frame(other)), loose, call=call) == []
