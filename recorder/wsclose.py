"""Closing open WebSocket connections with 1001 (going away) when the recorder stops.

mitmproxy has no command to close a WebSocket with a close code: cutting the
client connection makes it end the flow with 1006 (abnormal closure) and sends
the client no close frame at all. At a stop (`recorder.drain`) each open
connection is instead closed as a server going away would: a close frame
with 1001 to the client and to the app, then `websocket_end`, so the
recorder writes the end event before it flushes. It reaches into mitmproxy's
layer stack (the connection's `WebsocketLayer`, found from the proxy server's
connection handler) and asks that layer, through mitmproxy's own event
injection, to run the close; whatever cannot be found is left to the drain's
deadline, which closes connections the plain way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import wsproto.events
from mitmproxy import http
from mitmproxy.proxy import commands, layer
from mitmproxy.proxy.layers import websocket as layers_websocket
from mitmproxy.websocket import WebSocketMessage
from wsproto.connection import ConnectionState
from wsproto.frame_protocol import CloseReason, Opcode

logger = logging.getLogger(__name__)

#: The close code sent to both sides (RFC 6455: an endpoint going away, a server going down).
GOING_AWAY = int(CloseReason.GOING_AWAY)
#: The close reason sent with it.
REASON = "recorder stopping"
#: How deep the search for a connection's WebSocket layer goes.
_MAX_DEPTH = 16


class GoingAway(layers_websocket.WebSocketMessageInjected):
    """The injected event that makes one `WebsocketLayer` close its connection with 1001."""


def close_going_away(server: Any, flow: http.HTTPFlow) -> bool:
    """Close `flow`'s WebSocket with 1001 on both sides; False if it cannot be done here.

    `server` is mitmproxy's `Proxyserver` addon. The close runs on the event
    loop as an injected event, in order with the connection's other events.
    """
    connections = getattr(server, "connections", None) or {}
    handler = connections.get(flow.client_conn.id)
    inject = getattr(server, "inject_event", None)
    if handler is None or inject is None:
        return False
    found = _websocket_layer(getattr(handler, "layer", None), flow)
    if found is None or found._handle_event != found.relay_messages:
        return False  # not relaying (already closing): nothing to do
    relay = found._handle_event

    def handle(event: Any) -> Iterator[commands.Command]:
        if isinstance(event, GoingAway):
            return _close(found, flow)
        return relay(event)  # type: ignore[no-any-return]

    found._handle_event = handle
    try:
        inject(GoingAway(flow, WebSocketMessage(Opcode.TEXT, True, b"")))
    except Exception as exc:  # not live any more: the drain's deadline closes it
        found._handle_event = relay
        logger.debug("trafficmirror: cannot close WebSocket %s: %s", flow.id, exc)
        return False
    return True


def _close(ws: layers_websocket.WebsocketLayer, flow: http.HTTPFlow) -> Iterator[commands.Command]:
    """What mitmproxy does when one side sends a close frame, with 1001 from the recorder."""
    data = flow.websocket
    if data is None:  # only WebSocket flows get here
        return
    data.timestamp_end = time.time()
    data.closed_by_client = None  # neither side: the recorder closed it
    data.close_code = GOING_AWAY
    data.close_reason = REASON
    close = wsproto.events.CloseConnection(code=GOING_AWAY, reason=REASON)
    for side in (ws.server_ws, ws.client_ws):
        if side.state in {ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING}:
            yield side.send2(close)
        yield commands.CloseConnection(side.conn)
    yield layers_websocket.WebsocketEndHook(flow)
    flow.live = False
    ws._handle_event = ws.done


def _websocket_layer(root: Any, flow: http.HTTPFlow) -> layers_websocket.WebsocketLayer | None:
    """The `WebsocketLayer` of `flow` under `root`, searched through the layers' attributes."""
    todo: list[tuple[Any, int]] = [(root, 0)]
    seen: set[int] = set()
    while todo:
        item, depth = todo.pop()
        if id(item) in seen or depth > _MAX_DEPTH:
            continue
        seen.add(id(item))
        if isinstance(item, layers_websocket.WebsocketLayer):
            if item.flow is flow:
                return item
            continue
        for value in vars(item).values() if isinstance(item, layer.Layer) else ():
            if isinstance(value, layer.Layer):
                todo.append((value, depth + 1))
            elif isinstance(value, dict):
                todo.extend((v, depth + 1) for v in value.values() if isinstance(v, layer.Layer))
    return None
