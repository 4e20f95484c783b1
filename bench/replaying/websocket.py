"""The WebSocket row of bench/replay.py: replayed WebSocket messages per second.

`fill_ws` writes recorded WebSocket sessions as the recorder does (upgrade,
client messages each answered by the server, end; one session per
connection, connection c on partition c % 4). `ws_shadow_main` is the shadow:
an aiohttp WebSocket server in a process of its own that answers every client
message with the recorded answer (so the comparison finds nothing) and notes
when each arrived, handed over like the HTTP shadow's (`GET /__arrivals`).
The rate is client messages per second at the shadow, from the first to the
last; each is sent on its session's connection in recorded order, sessions
run side by side. It runs as `bench/replay.py --_ws-shadow PORT`.
"""

from __future__ import annotations

import statistics
import time

from replaying.report import spread
from replaying.runs import Run
from replaying.traffic import BASE_US, PARTITIONS

SAY = b'{"say": "hello, how is everyone today?", "room": "bench"}'
ANSWER = b'{"user": {"name": "alice", "id": 42}, "said": "hello, how is everyone today?", "n": 1}'


def _event(session: int, number: int, start_us: int, prefix: str) -> dict[str, object]:
    return {
        "id": f"{prefix}-{session}-{number}",
        "request_start_us": start_us,
        "request_end_us": start_us + 50,
        "response_start_us": None,
        "response_end_us": None,
        "client": {"host": "10.1.2.3", "port": 20000 + session},
        "server": {"host": "10.0.0.1", "port": 8080},
        "scheme": "http",
        "method": "GET",
        "authority": "chat.bench.local",
        "path": b"/chat",
        "http_version": "HTTP/1.1",
        "request": {
            "headers": [],
            "body": b"",
            "body_truncated": False,
            "body_length": 0,
            "trailers": None,
        },
        "response": None,
        "error": None,
        "recorder": {
            "recorder_id": "bench",
            "sampling_rate": 1.0,
            "redactions": [],
            "capture": "proxy",
        },
        "kind": "http",
        "websocket": None,
    }


def _ws(upgrade_id: str, index: int, from_client: bool, payload: bytes) -> dict[str, object]:
    return {
        "upgrade_id": upgrade_id,
        "index": index,
        "from_client": from_client,
        "text": True,
        "payload": payload,
        "payload_truncated": False,
        "payload_length": len(payload),
        "close_code": 1000 if index and not payload else None,
        "messages_not_recorded": 0,
    }


def session_events(session: int, messages: int, prefix: str) -> list[dict[str, object]]:
    """The events of one session: upgrade, `messages` exchanges 100 µs apart, end."""
    start = BASE_US + session * 10
    upgrade = _event(session, 0, start, prefix)
    upgrade["request"] = {
        "headers": [
            b"Host",
            b"chat.bench.local",
            b"Upgrade",
            b"websocket",
            b"Connection",
            b"Upgrade",
            b"Sec-WebSocket-Key",
            b"dGhlIHNhbXBsZSBub25jZQ==",
            b"Sec-WebSocket-Version",
            b"13",
        ],
        "body": b"",
        "body_truncated": False,
        "body_length": 0,
        "trailers": None,
    }
    upgrade["response"] = {
        "status": 101,
        "reason": b"Switching Protocols",
        "http_version": "HTTP/1.1",
        "message": {
            "headers": [b"Upgrade", b"websocket", b"Connection", b"Upgrade"],
            "body": b"",
            "body_truncated": False,
            "body_length": 0,
            "trailers": None,
        },
    }
    upgrade["response_end_us"] = start + 300
    events = [upgrade]
    upgrade_id = str(upgrade["id"])
    for n in range(messages):
        at = start + 1000 + n * 100
        for offset, from_client, payload in ((0, True, SAY), (50, False, ANSWER)):
            event = _event(session, len(events), at + offset, prefix)
            event["kind"] = "websocket_message"
            event["websocket"] = _ws(upgrade_id, len(events) - 1, from_client, payload)
            events.append(event)
    end = _event(session, len(events), start + 1000 + messages * 100 + 50, prefix)
    end["kind"] = "websocket_end"
    end["websocket"] = _ws(upgrade_id, len(events) - 1, True, b"")
    events.append(end)
    return events


def fill_ws(bootstrap: str, topic: str, sessions: int, messages: int, prefix: str) -> None:
    """Write `sessions` recorded sessions of `messages` client messages each."""
    from confluent_kafka import Producer

    from schemas.codec import Codec

    codec = Codec()
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "queue.buffering.max.messages": 500000}
    )
    for session in range(sessions):
        for event in session_events(session, messages, prefix):
            encoded = codec.encode(event)
            producer.produce(
                topic,
                value=encoded.value,
                key=f"10.1.2.3:{20000 + session}".encode(),
                headers=encoded.headers,
                timestamp=int(str(event["request_start_us"])) // 1000,
                partition=session % PARTITIONS,
            )
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} records not delivered to {topic}")


def ws_shadow_main(port: int) -> None:
    """Entry point of the WebSocket shadow process."""
    from aiohttp import WSMsgType, web

    arrivals: list[tuple[float, bytes]] = []
    answer = ANSWER.decode()

    async def chat(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                arrivals.append((time.monotonic(), b"ws"))
                await ws.send_str(answer)
        return ws

    async def handed_over(request: web.Request) -> web.Response:
        body = b"\n".join(b"%.6f %s" % (t, i) for t, i in arrivals)
        arrivals.clear()
        return web.Response(body=body)

    app = web.Application()
    app.router.add_get("/__arrivals", handed_over)
    app.router.add_get("/{tail:.*}", chat)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def ws_row(runs: list[Run], sessions: int, messages: int) -> None:
    """The table row: client messages per second at the shadow, CPU per message."""
    if not runs:
        return
    values = [r.rps for r in runs]
    cpu = statistics.median(r.cpu_us for r in runs)
    print(
        f"| WebSocket messages per second: replay range --speed max, 1 process, {sessions} "
        f"sessions of {messages} client messages (each answered, compared) | "
        f"{spread(values)} messages/s | {cpu:.0f} us | | |"
    )
