"""HTTP/2 over clear text with prior knowledge (h2c), accepted and recorded.

A client that knows the app speaks HTTP/2 without TLS (gRPC in a cluster,
`curl --http2-prior-knowledge`, h2 libraries) opens the connection with the
HTTP/2 preface, `PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`. mitmproxy (11 and 12)
serves every clear-text connection as HTTP/1: it reads the preface as a request
`PRI *`, its DisableH2C addon kills that, and the client gets a closed
connection (and the recorder an event for a `PRI *` "exchange"). mitmproxy's
HTTP layer serves HTTP/2 to a client whose connection says ALPN `h2`, so
`PriorKnowledge` says so for a clear-text connection whose first bytes are the
preface; everything else about the connection is untouched. The upstream side
is chosen as for any client (HTTP/1.1 to an http:// upstream, mitmproxy
translates), and the event records the request as the client sent it, HTTP/2.0.
gRPC is the exception: it is HTTP/2 only, so for a gRPC request (content type
`application/grpc` or `application/grpc+...`; not gRPC-Web) whose upstream
connection is not open yet, `PriorKnowledge` asks for HTTP/2 upstream too: h2c
with prior knowledge to an http:// upstream, ALPN `h2` to an https:// one (for
every upstream connection of a client connection once it sent a gRPC request).
"""

from __future__ import annotations

import logging
from typing import Any

from mitmproxy import connection, http
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.layers.http import HttpLayer

from trafficmirror.plumbing.grpcmedia import is_grpc_media

logger = logging.getLogger(__name__)

#: The first bytes of every HTTP/2 connection (RFC 9113, section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_H2 = b"h2"


def is_grpc(request: http.Request) -> bool:
    """True for a gRPC request: its first content type is gRPC's (`is_grpc_media`)."""
    for name, value in request.data.headers.fields:
        if name.lower() == b"content-type":
            return is_grpc_media(value)
    return False


class PriorKnowledge:
    """Serves HTTP/2 to clear-text clients that start with the HTTP/2 preface.

    Runs after mitmproxy's NextLayer has chosen the layer: when that is the
    HTTP layer of a connection without TLS, and the client's first bytes are
    the preface, the connection's ALPN is set to `h2` (mitmproxy then speaks
    HTTP/2 to it). While the bytes so far are only the start of the preface,
    the decision waits for more. After a gRPC request, `server_connect` does the
    same for the upstream connections the client connection opens.
    """

    def __init__(self) -> None:
        # Client connections that sent a gRPC request: their upstream speaks HTTP/2.
        self._grpc_clients: set[str] = set()

    def next_layer(self, nextlayer: Any) -> None:
        context = nextlayer.context
        client = context.client
        if client.tls or client.alpn or not isinstance(nextlayer.layer, HttpLayer):
            return
        data = nextlayer.data_client()
        if data.startswith(PREFACE):
            client.alpn = b"h2"
            logger.debug("trafficmirror: client %s speaks h2c (prior knowledge)", client.peername)
        elif data and PREFACE.startswith(data):
            nextlayer.layer = None  # only part of the preface so far: ask again with more

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # Runs for every request: gRPC is HTTP/2 only, and a connection is noted once.
        if flow.request.data.http_version != b"HTTP/2.0":
            return
        client = flow.client_conn.id
        if client not in self._grpc_clients and is_grpc(flow.request):
            self._grpc_clients.add(client)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        # mitmproxy picks its HTTP/2 client for an upstream connection by the
        # connection's ALPN: set before the connection opens, it holds for a clear-text
        # upstream (h2c, prior knowledge); over TLS the handshake replaces it with what
        # the server chose from the offer. (The request's own flow.server_conn is not
        # the connection mitmproxy opens when none is open yet, hence per client.)
        server = data.server
        if data.client.id in self._grpc_clients and server.alpn is None:
            server.alpn = _H2
            if not server.alpn_offers:
                server.alpn_offers = (_H2,)

    def client_disconnected(self, client: connection.Client) -> None:
        self._grpc_clients.discard(client.id)
