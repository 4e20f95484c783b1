"""A real grpcio service for the gRPC tests, built from a .proto at test time.

`compile_proto()` runs grpc_tools.protoc (grpcio-tools) on `PROTO` into a
descriptor set (`--include_imports`, as `--proto-descriptor-set` wants it);
the message classes come from that set through protobuf's message factory,
so no generated module is committed. `UsersServer` serves `shop.v1.Users`
with grpcio's generic handlers: `GetUser` (unary), `ListUsers` (server
streaming), `Fail` (aborts NOT_FOUND with a message), `Collect` (client
streaming: one answer naming every id sent) and `Chat` (bidirectional: an
answer to each request as it comes). `changed_field`
makes a shadow whose answers differ from production in `user.name`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PROTO = """
syntax = "proto3";
package shop.v1;

message User {
  string name = 1;
  int32 id = 2;
  repeated string tags = 3;
}
message GetUserRequest { int32 id = 1; }
message GetUserReply { User user = 1; string note = 2; }
message ListUsersRequest { int32 count = 1; }

service Users {
  rpc GetUser(GetUserRequest) returns (GetUserReply);
  rpc ListUsers(ListUsersRequest) returns (stream GetUserReply);
  rpc Fail(GetUserRequest) returns (GetUserReply);
  rpc Collect(stream GetUserRequest) returns (GetUserReply);
  rpc Chat(stream GetUserRequest) returns (stream GetUserReply);
}
"""

SERVICE = "shop.v1.Users"


def compile_proto(folder: Path) -> Path:
    """The descriptor set of `PROTO`, written by protoc into `folder`; returns its path."""
    from grpc_tools import protoc

    source = folder / "users.proto"
    source.write_text(PROTO)
    out = folder / "users.pb"
    code = protoc.main(
        [
            "protoc",
            f"-I{folder}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            str(source),
        ]
    )
    assert code == 0, f"protoc failed with {code}"
    return out


@dataclass
class Messages:
    """The message classes of `PROTO`, from a descriptor set."""

    request: Any
    reply: Any
    user: Any
    list_request: Any
    pool: Any = None

    @classmethod
    def load(cls, descriptor_set: Path) -> Messages:
        files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
        pool = descriptor_pool.DescriptorPool()
        for proto in files.file:
            pool.Add(proto)

        def make(name: str) -> Any:
            return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"shop.v1.{name}"))

        return cls(
            make("GetUserRequest"),
            make("GetUserReply"),
            make("User"),
            make("ListUsersRequest"),
            pool,
        )


@dataclass
class UsersServer:
    """`shop.v1.Users` on 127.0.0.1 (cleartext h2c, or TLS with `cert`/`key` PEM bytes).

    `changed_field`: answer `user.name` in upper case (a shadow with a regression).
    `reflection`: also serve gRPC server reflection (grpcio-reflection).
    `stream_gate`: `ListUsers` sends its first message, then waits (at most
    `gate_timeout` seconds) for the gate before the rest: a client that sets the
    gate when it has the first message proves the stream was not buffered.
    """

    messages: Messages
    changed_field: bool = False
    cert: bytes | None = None
    key: bytes | None = None
    stream_gate: threading.Event | None = None
    reflection: bool = False
    gate_timeout: float = 20.0
    gate_passed: list[bool] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    metadata: list[tuple[tuple[str, str], ...]] = field(default_factory=list)
    port: int = 0
    _server: Any = None

    def _user(self, number: int) -> Any:
        name = f"user-{number}"
        return self.messages.user(
            name=name.upper() if self.changed_field else name, id=number, tags=["a", "b"]
        )

    def _get(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls.append("GetUser")
        self.metadata.append(tuple(context.invocation_metadata()))  # type: ignore[arg-type]
        context.set_trailing_metadata((("x-users-version", "1"),))
        return self.messages.reply(user=self._user(request.id), note="ok")

    def _list(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self.calls.append("ListUsers")
        for number in range(request.count):
            yield self.messages.reply(user=self._user(number), note=f"#{number}")
            if number == 0 and self.stream_gate is not None:
                self.gate_passed.append(self.stream_gate.wait(self.gate_timeout))

    def _collect(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        self.calls.append("Collect")
        users = [self._user(r.id) for r in requests]
        return self.messages.reply(user=users[-1] if users else None, note=f"{len(users)} ids")

    def _chat(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        self.calls.append("Chat")
        for request in requests:
            yield self.messages.reply(user=self._user(request.id), note="chat")

    def _fail(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls.append("Fail")
        context.abort(grpc.StatusCode.NOT_FOUND, f"no user {request.id}")

    def __enter__(self) -> UsersServer:
        m = self.messages
        handlers = {
            "GetUser": grpc.unary_unary_rpc_method_handler(
                self._get,
                request_deserializer=m.request.FromString,
                response_serializer=m.reply.SerializeToString,
            ),
            "ListUsers": grpc.unary_stream_rpc_method_handler(
                self._list,
                request_deserializer=m.list_request.FromString,
                response_serializer=m.reply.SerializeToString,
            ),
            "Fail": grpc.unary_unary_rpc_method_handler(
                self._fail,
                request_deserializer=m.request.FromString,
                response_serializer=m.reply.SerializeToString,
            ),
            "Collect": grpc.stream_unary_rpc_method_handler(
                self._collect,
                request_deserializer=m.request.FromString,
                response_serializer=m.reply.SerializeToString,
            ),
            "Chat": grpc.stream_stream_rpc_method_handler(
                self._chat,
                request_deserializer=m.request.FromString,
                response_serializer=m.reply.SerializeToString,
            ),
        }
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        if self.reflection:
            from grpc_reflection.v1alpha import reflection

            reflection.enable_server_reflection(
                (SERVICE, reflection.SERVICE_NAME), self._server, pool=m.pool
            )
        if self.cert is not None and self.key is not None:
            credentials = grpc.ssl_server_credentials(((self.key, self.cert),))
            self.port = self._server.add_secure_port("127.0.0.1:0", credentials)
        else:
            self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)

    @property
    def url(self) -> str:
        scheme = "https" if self.cert is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"


class UsersClient:
    """Calls `shop.v1.Users` over a grpcio channel (h2c, or TLS trusting `root_pem`)."""

    def __init__(self, messages: Messages, port: int, root_pem: bytes | None = None) -> None:
        self.messages = messages
        target = f"127.0.0.1:{port}"
        # Loopback only, whatever *_proxy variables the environment has.
        options: tuple[tuple[str, Any], ...] = (("grpc.enable_http_proxy", 0),)
        if root_pem is None:
            self.channel = grpc.insecure_channel(target, options)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_pem)
            # mitmproxy's certificate names the upstream host; the name checked is fixed here.
            options += (("grpc.ssl_target_name_override", "127.0.0.1"),)
            self.channel = grpc.secure_channel(target, credentials, options)
        m = messages
        self.get_user = self.channel.unary_unary(
            f"/{SERVICE}/GetUser",
            request_serializer=m.request.SerializeToString,
            response_deserializer=m.reply.FromString,
        )
        self.list_users = self.channel.unary_stream(
            f"/{SERVICE}/ListUsers",
            request_serializer=m.list_request.SerializeToString,
            response_deserializer=m.reply.FromString,
        )
        self.fail = self.channel.unary_unary(
            f"/{SERVICE}/Fail",
            request_serializer=m.request.SerializeToString,
            response_deserializer=m.reply.FromString,
        )
        self.collect = self.channel.stream_unary(
            f"/{SERVICE}/Collect",
            request_serializer=m.request.SerializeToString,
            response_deserializer=m.reply.FromString,
        )
        self.chat = self.channel.stream_stream(
            f"/{SERVICE}/Chat",
            request_serializer=m.request.SerializeToString,
            response_deserializer=m.reply.FromString,
        )

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> UsersClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
