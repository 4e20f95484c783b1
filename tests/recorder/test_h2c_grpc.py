"""PriorKnowledge's gRPC part: HTTP/2 to the upstream once a client connection sent gRPC."""

from __future__ import annotations

from mitmproxy.proxy import server_hooks
from mitmproxy.test import tflow

from recorder.h2c import PriorKnowledge, is_grpc


def flow_with(content_type: str) -> tflow.HTTPFlow:
    flow = tflow.tflow()
    flow.request.http_version = "HTTP/2.0"  # gRPC is HTTP/2 only
    flow.request.headers["content-type"] = content_type
    return flow


def test_is_grpc() -> None:
    assert is_grpc(flow_with("application/grpc").request)
    assert is_grpc(flow_with("application/grpc+proto; charset=x").request)
    assert not is_grpc(flow_with("application/grpc-web").request)
    assert not is_grpc(flow_with("application/json").request)


def test_upstream_connections_of_a_grpc_client_speak_http2() -> None:
    addon = PriorKnowledge()
    grpc_flow, plain_flow = flow_with("application/grpc"), flow_with("text/plain")
    addon.requestheaders(grpc_flow)
    addon.requestheaders(plain_flow)  # another client connection, not gRPC

    def connect(flow: tflow.HTTPFlow) -> server_hooks.ServerConnectionHookData:
        server = tflow.tserver_conn()
        server.alpn = None
        server.alpn_offers = []
        data = server_hooks.ServerConnectionHookData(server, flow.client_conn)
        addon.server_connect(data)
        return data

    opened = connect(grpc_flow).server
    assert (opened.alpn, tuple(opened.alpn_offers)) == (b"h2", (b"h2",))
    plain = connect(plain_flow).server
    assert (plain.alpn, tuple(plain.alpn_offers)) == (None, ())
    # Once the client connection is gone, nothing of it is kept.
    addon.client_disconnected(grpc_flow.client_conn)
    assert connect(grpc_flow).server.alpn is None
