"""gRPC through `trafficmirror record`: a real grpcio client and server, h2c and TLS.

The client calls a unary method, a server-streaming one, one that fails, a
client-streaming one and a bidirectional one (ping-pong: each request waits
for the answer to the previous one, so it needs both directions live at once),
through the recorder (clear text with HTTP/2 prior knowledge, and TLS with ALPN
h2 trusting mitmproxy's CA) to a grpcio server on clear text behind it. The
calls must succeed for the client, the stream must reach it message by message
(the server holds its second message until the client has the first), and the
events must keep the bodies with their 5-byte message framing and the trailers
with grpc-status and grpc-message.
"""

from __future__ import annotations

import queue
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.grpcapp import Messages, UsersClient, UsersServer, compile_proto
from tests.recorder.helpers import read_events
from tests.support import Kafka, Procs, free_port, wait_port

pytestmark = pytest.mark.e2e


def frame(payload: bytes, compressed: int = 0) -> bytes:
    """One gRPC length-prefixed message."""
    return struct.pack(">BI", compressed, len(payload)) + payload


def pairs(flat: list[bytes] | None) -> dict[bytes, bytes]:
    flat = flat or []
    return dict(zip(flat[0::2], flat[1::2], strict=True))


@pytest.fixture(scope="module")
def grpc_messages(tmp_path_factory: pytest.TempPathFactory) -> Messages:
    return Messages.load(compile_proto(tmp_path_factory.mktemp("proto")))


@pytest.fixture
def gated_server(grpc_messages: Messages) -> Iterator[UsersServer]:
    with UsersServer(grpc_messages, stream_gate=threading.Event()) as server:
        yield server


def start_recorder(
    procs: Procs, kafka: Kafka, topic: str, upstream: str, confdir: Path, *extra: str
) -> int:
    port = free_port()
    procs.start(
        "recorder",
        [
            "record",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            topic,
            "--upstream",
            upstream,
            "--listen",
            f"127.0.0.1:{port}",
            "--confdir",
            str(confdir),
            *extra,
        ],
    )
    wait_port(port, timeout=15)
    return port


@pytest.mark.parametrize("transport", ["h2c", "tls"])
def test_grpc_calls_recorded_through_record(
    transport: str,
    kafka: Kafka,
    procs: Procs,
    grpc_messages: Messages,
    gated_server: UsersServer,
    tmp_path: Path,
) -> None:
    m = grpc_messages
    topic = kafka.new_topic(1)
    confdir = tmp_path / "mitmproxy"
    port = start_recorder(procs, kafka, topic, gated_server.url, confdir)
    root = (confdir / "mitmproxy-ca-cert.pem").read_bytes() if transport == "tls" else None
    gate = gated_server.stream_gate
    assert gate is not None

    with UsersClient(m, port, root) as client:
        reply, unary_call = client.get_user.with_call(
            m.request(id=7), timeout=30, metadata=(("x-tenant", "t1"),)
        )
        streamed: list[Any] = []
        for item in client.list_users(m.list_request(count=3), timeout=30):
            streamed.append(item)
            gate.set()  # the server sends the rest only once the client has the first
        with pytest.raises(grpc.RpcError) as failed:
            client.fail(m.request(id=9), timeout=30)
        collected = client.collect(iter([m.request(id=n) for n in (1, 2, 3)]), timeout=30)
        answered: queue.Queue[str] = queue.Queue()

        def ping_pong() -> Iterator[Any]:
            for number in (5, 6, 7):
                yield m.request(id=number)
                answered.get(timeout=20)  # raises queue.Empty: the answer never came

        chat = []
        for answer in client.chat(ping_pong(), timeout=30):
            chat.append(answer)
            answered.put(answer.user.name)

    # Live: the calls succeeded for the client, and the stream was not buffered.
    assert (reply.user.name, reply.user.id, reply.note) == ("user-7", 7, "ok")
    # Metadata both ways: the client's reached the server, the server's trailers the client.
    assert ("x-tenant", "t1") in gated_server.metadata[0]
    assert ("x-users-version", "1") in tuple(unary_call.trailing_metadata() or ())
    assert [s.user.name for s in streamed] == ["user-0", "user-1", "user-2"]
    assert gated_server.gate_passed == [True], "the first streamed message was held back"
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND
    assert failed.value.details() == "no user 9"
    assert (collected.user.name, collected.note) == ("user-3", "3 ids")
    assert [a.user.name for a in chat] == ["user-5", "user-6", "user-7"]
    assert gated_server.calls == ["GetUser", "ListUsers", "Fail", "Collect", "Chat"]

    events = {e["path"]: e for _, e in read_events(kafka.bootstrap_servers, topic, 5)}
    assert len(events) == 5

    unary = events[b"/shop.v1.Users/GetUser"]
    assert unary["http_version"] == "HTTP/2.0"
    assert unary["scheme"] == ("https" if transport == "tls" else "http")
    assert unary["request"]["body"] == frame(m.request(id=7).SerializeToString())
    headers = pairs(unary["request"]["headers"])
    assert headers[b"content-type"] == b"application/grpc"
    assert headers[b"x-tenant"] == b"t1"
    response = unary["response"]
    assert response["status"] == 200
    assert response["message"]["body"] == frame(reply.SerializeToString())
    assert response["message"]["body_truncated"] is False
    trailers = pairs(response["message"]["trailers"])
    assert trailers[b"grpc-status"] == b"0"
    assert trailers[b"x-users-version"] == b"1"

    stream = events[b"/shop.v1.Users/ListUsers"]["response"]["message"]
    assert stream["body"] == b"".join(frame(s.SerializeToString()) for s in streamed)
    assert pairs(stream["trailers"])[b"grpc-status"] == b"0"

    # A failed call answers with headers only ("Trailers-Only"): the status is in them.
    failure = events[b"/shop.v1.Users/Fail"]["response"]["message"]
    status = pairs(failure["trailers"]) or pairs(failure["headers"])
    assert status[b"grpc-status"] == b"5"  # NOT_FOUND
    assert status[b"grpc-message"] == b"no user 9"

    # Client streaming and bidirectional: every message of each direction, in order.
    sent = [frame(m.request(id=n).SerializeToString()) for n in (1, 2, 3)]
    assert events[b"/shop.v1.Users/Collect"]["request"]["body"] == b"".join(sent)
    bidi = events[b"/shop.v1.Users/Chat"]
    assert bidi["request"]["body"] == b"".join(
        frame(m.request(id=n).SerializeToString()) for n in (5, 6, 7)
    )
    assert bidi["response"]["message"]["body"] == b"".join(
        frame(a.SerializeToString()) for a in chat
    )
    assert pairs(bidi["response"]["message"]["trailers"])[b"grpc-status"] == b"0"


def test_grpc_bodies_over_the_cap_cut_with_framing_kept(
    kafka: Kafka,
    procs: Procs,
    grpc_messages: Messages,
    tmp_path: Path,
) -> None:
    """A stream longer than --max-body-bytes is kept from its start, flagged truncated."""
    m = grpc_messages
    topic = kafka.new_topic(1)
    with UsersServer(m) as server:
        port = start_recorder(
            procs, kafka, topic, server.url, tmp_path / "mitmproxy", "--max-body-bytes", "1024"
        )
        with UsersClient(m, port) as client:
            streamed = list(client.list_users(m.list_request(count=200), timeout=30))
    assert len(streamed) == 200
    whole = b"".join(frame(s.SerializeToString()) for s in streamed)
    assert len(whole) > 1024
    [(_, event)] = read_events(kafka.bootstrap_servers, topic, 1)
    message = event["response"]["message"]
    assert message["body_truncated"] is True
    assert message["body_length"] == len(whole)
    assert message["body"] == whole[:1024]
    assert pairs(message["trailers"])[b"grpc-status"] == b"0"
