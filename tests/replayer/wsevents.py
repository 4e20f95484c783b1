"""WebSocket sessions as events, and a chat shadow that answers over a real WebSocket.

`ws_session()` builds what the recorder writes for one connection: the upgrade
(an http event with status 101), one event per message and the end, all with
the upgrade's client, authority and path, so `produce_events` keys them alike.
`ChatShadow` is an aiohttp WebSocket server in a thread: for each text message
`{"say": ...}` it answers `{"user": {"name": NAME}, "said": ..., "n": N}`, and
keeps when each client message arrived.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from tests.replayer.events import make_event
from trafficmirror.demo.apps import _Server

_ids = itertools.count()


@dataclass(frozen=True)
class Msg:
    """One recorded message: `at` seconds after the upgrade, who sent it, and what."""

    at: float
    from_client: bool
    payload: bytes
    text: bool = True


def reply(said: str, n: int, name: str = "alice") -> bytes:
    """What the chat answers to the `n`-th message (1-based)."""
    return json.dumps({"user": {"name": name}, "said": said, "n": n}).encode()


def chat(
    lines: Sequence[str], gap: float = 0.1, name: str = "alice", answer_after: float = 0.01
) -> list[Msg]:
    """A chat: the client says each line `gap` seconds apart, the server answers each."""
    out: list[Msg] = []
    for n, line in enumerate(lines, start=1):
        at = n * gap
        out.append(Msg(at, True, json.dumps({"say": line}).encode()))
        out.append(Msg(at + answer_after, False, reply(line, n, name)))
    return out


def ws_session(
    messages: Sequence[Msg],
    *,
    path: str = "/chat",
    start_us: int = 1_770_000_000_000_000,
    client: tuple[str, int] | None = None,
    end_after: float = 0.05,
    close_code: int | None = 1000,
    closed_by_client: bool = True,
    with_end: bool = True,
    not_recorded: int = 0,
) -> list[dict[str, Any]]:
    """The events of one recorded WebSocket connection, in the order the recorder writes them."""
    number = next(_ids)
    client = client or ("127.0.0.1", 52000 + number)
    upgrade = make_event(
        path=path,
        headers=[
            ("Host", "chat.example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
            ("User-Agent", "test/1"),
        ],
        exchange_id=f"ws-{number}",
        request_start_us=start_us,
        client=client,
        authority="chat.example.com",
        status=101,
        response_body=b"",
    )
    events = [upgrade]

    def follow(kind: str, at: float, ws: dict[str, Any]) -> dict[str, Any]:
        event = make_event(
            path=path,
            exchange_id=f"ws-{number}-{len(events)}",
            request_start_us=start_us + round(at * 1_000_000),
            client=client,
            authority="chat.example.com",
            status=None,
            headers=[],
        )
        event["kind"] = kind
        event["websocket"] = ws
        return event

    for index, msg in enumerate(messages):
        events.append(
            follow(
                "websocket_message",
                msg.at,
                {
                    "upgrade_id": upgrade["id"],
                    "index": index,
                    "from_client": msg.from_client,
                    "text": msg.text,
                    "payload": msg.payload,
                    "payload_truncated": False,
                    "payload_length": len(msg.payload),
                    "close_code": None,
                    "messages_not_recorded": 0,
                },
            )
        )
    if with_end:
        last = messages[-1].at if messages else 0.0
        events.append(
            follow(
                "websocket_end",
                last + end_after,
                {
                    "upgrade_id": upgrade["id"],
                    "index": len(messages),
                    "from_client": closed_by_client,
                    "text": False,
                    "payload": b"",
                    "payload_truncated": False,
                    "payload_length": 0,
                    "close_code": close_code,
                    "messages_not_recorded": not_recorded,
                },
            )
        )
    return events


@dataclass(frozen=True)
class Heard:
    """A client message as the shadow received it."""

    at: float
    path: str
    data: str
    headers: dict[str, str]


class ChatShadow(_Server):
    """The chat over a real WebSocket (see the module doc); `name` is who answers."""

    def __init__(self, name: str = "alice") -> None:
        super().__init__()
        self.shutdown_timeout = 2.0  # a connection left open must not hold the stop
        self.name = name
        self._lock = threading.Lock()
        self._heard: list[Heard] = []
        self.upgrades = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        with self._lock:
            self.upgrades += 1
        n = 0
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            with self._lock:
                self._heard.append(
                    Heard(time.time(), request.raw_path, message.data, dict(request.headers))
                )
            n += 1
            said = json.loads(message.data)["say"]
            await ws.send_str(reply(said, n, self.name).decode())
        return ws

    @property
    def heard(self) -> list[Heard]:
        with self._lock:
            return list(self._heard)
