"""WebSocketClient: the handshake as prepared (headers, subprotocols), wss, the caps, closes."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import WSMsgType, web

from replayer.models import OutgoingRequest, Target
from replayer.sending.websocket import Caps, WebSocketClient
from tests.support import self_signed_cert

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(
    handler: Handler, context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    server = site._server
    assert server is not None
    return runner, int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]


def upgrade(port: int, scheme: str = "http", path: str = "/chat?x=1") -> OutgoingRequest:
    return OutgoingRequest(
        method="GET",
        target=Target(scheme, f"127.0.0.1:{port}"),
        path=path,
        headers=(
            ("Host", f"127.0.0.1:{port}"),
            ("Sec-WebSocket-Key", "recorded-key"),
            ("Sec-WebSocket-Protocol", "chat.v2, chat.v1"),
            ("Authorization", "Bearer t"),
            ("X-Trafficmirror-Replay", "ws-1"),
        ),
        body=b"",
        exchange_id="ws-1",
    )


def test_ws_client_sends_in_order_and_keeps_what_the_caps_allow() -> None:
    seen: dict[str, object] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=("chat.v1",))
        await ws.prepare(request)
        seen["path"] = request.raw_path
        seen["headers"] = dict(request.headers)
        got = []
        async for message in ws:
            got.append(message.data)
            if message.type == WSMsgType.TEXT:
                await ws.send_str("x" * 30)
            else:
                await ws.send_bytes(b"y" * 30)
        seen["got"] = got
        return ws

    async def main() -> None:
        runner, port = await serve(handler)
        client = WebSocketClient(timeout=5, caps=Caps(messages=2, bytes=45, payload=20))
        try:
            connection = client.connect(upgrade(port))
            sent = [connection.send(True, b"one"), connection.send(False, b"\x00two")]
            sent.append(connection.send(True, b"three"))
            handshake = await connection.opened()
            assert handshake.status == 101 and handshake.error is None
            assert handshake.headers == (("Sec-WebSocket-Protocol", "chat.v1"),)
            await asyncio.gather(*sent)
            await connection.settle(3, wait_close=False, timeout=5)
            assert connection.received_count == 3
            # Two kept (the message cap), each cut at 20 bytes (the payload cap); all counted.
            kept = [(m.payload, m.length, m.truncated, m.text) for m in connection.received]
            assert kept == [(b"x" * 20, 30, True, True), (b"y" * 20, 30, True, False)]
            await connection.close(1000)
        finally:
            await client.aclose()
            await runner.cleanup()

    asyncio.run(main())
    assert seen["path"] == "/chat?x=1"
    headers = seen["headers"]
    assert isinstance(headers, dict)
    assert headers["Authorization"] == "Bearer t"
    assert headers["X-Trafficmirror-Replay"] == "ws-1"
    assert headers["Sec-WebSocket-Key"] != "recorded-key"  # the client's own
    assert seen["got"] == ["one", b"\x00two", "three"]


def test_ws_client_over_tls(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str("echo:" + message.data)
        return ws

    async def main() -> None:
        runner, port = await serve(handler, server_context)
        client = WebSocketClient(timeout=5)
        untrusting = WebSocketClient(timeout=5)
        try:
            client._ssl = ssl.create_default_context(cafile=str(cert))
            connection = client.connect(upgrade(port, "https"))
            await connection.send(True, b"hi")
            await connection.settle(1, wait_close=False, timeout=5)
            assert [m.payload for m in connection.received] == [b"echo:hi"]
            await connection.close(None)
            refused = untrusting.connect(upgrade(port, "https"))  # the default trust store
            handshake = await refused.opened()
            assert handshake.status is None and "certificate" in (handshake.error or "").lower()
            try:
                await refused.send(True, b"never")
            except ConnectionError as exc:
                assert "certificate" in str(exc).lower()
            else:
                raise AssertionError("sent on a connection that never opened")
        finally:
            await client.aclose()
            await untrusting.aclose()
            await runner.cleanup()

    asyncio.run(main())


def test_ws_client_sees_the_shadow_close_and_fails_later_sends() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()
        await ws.close(code=1011, message=b"bye")
        return ws

    async def main() -> None:
        runner, port = await serve(handler)
        client = WebSocketClient(timeout=5)
        try:
            connection = client.connect(upgrade(port))
            await connection.send(True, b"first")
            await connection.settle(0, wait_close=True, timeout=5)
            assert connection.closed_by_server and connection.close_code == 1011
            try:
                await connection.send(True, b"second")
            except ConnectionError as exc:
                assert "1011" in str(exc)
            else:
                raise AssertionError("sent after the shadow closed")
        finally:
            await client.aclose()
            await runner.cleanup()

    asyncio.run(main())
