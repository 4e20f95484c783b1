"""The shadow: a minimal asyncio HTTP/1.1 and h2c server in a process of its own.

It answers every request with the recorded response (so the replay's
comparison finds nothing) and notes when each replayed request arrived, by
its `x-trafficmirror-replay` header; `GET /__arrivals` hands those notes over
and forgets them. A connection that starts with the HTTP/2 preface is served
by `replaying/h2shadow.py` (h2c with prior knowledge). Measuring at the shadow
leaves the replayer's start-up and final flush out of its requests/s. It runs
as `bench/replay.py --_shadow PORT`.
"""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request

from replaying.h2shadow import H2Shadow
from replaying.traffic import RESPONSE_BODY

_REPLAY_MARK = b"\r\nx-trafficmirror-replay: "
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(RESPONSE_BODY)).encode()
    + b"\r\n\r\n"
    + RESPONSE_BODY
)


class _ShadowProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive, bodies by Content-Length; notes replayed requests' arrival."""

    def __init__(self, arrivals: list[tuple[float, bytes]]) -> None:
        self.arrivals = arrivals
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.h2: H2Shadow | None = None
        self.started = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.h2 is not None:
            self.h2.data_received(data)
            return
        if not self.started:
            first = self.buffer + data
            if _PREFACE.startswith(first[: len(_PREFACE)]):
                if len(first) < len(_PREFACE):
                    self.buffer = first  # wait for the whole preface
                    return
                assert self.transport is not None
                self.h2 = H2Shadow(self.transport, self.arrivals)
                self.buffer = b""
                self.h2.data_received(first)
                return
            self.started = True
        now = time.monotonic()
        buf = self.buffer + data if self.buffer else data
        out = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end == -1:
                break
            head = buf[:end]
            lower = head.lower()
            length = 0
            at = lower.find(b"\r\ncontent-length:")
            if at != -1:
                stop_at = lower.find(b"\r\n", at + 2)
                length = int(lower[at + 17 : stop_at if stop_at != -1 else None])
            total = end + 4 + length
            if len(buf) < total:
                break
            mark = lower.find(_REPLAY_MARK)
            if mark != -1:
                stop_at = head.find(b"\r\n", mark + 2)
                self.arrivals.append(
                    (now, head[mark + len(_REPLAY_MARK) : stop_at if stop_at != -1 else None])
                )
            elif head.startswith(b"GET /__arrivals "):
                body = b"\n".join(b"%.6f %s" % (t, i) for t, i in self.arrivals)
                self.arrivals.clear()
                out.append(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                buf = buf[total:]
                continue
            out.append(_OK)
            buf = buf[total:]
        self.buffer = buf
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


def shadow_main(port: int) -> None:
    """Entry point of the shadow process."""
    arrivals: list[tuple[float, bytes]] = []

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _ShadowProtocol(arrivals), "127.0.0.1", port, backlog=1024
        )
        stopped = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        async with server:
            await stopped.wait()

    asyncio.run(serve())


def fetch_arrivals(port: int) -> list[tuple[float, str]]:
    """The replayed requests the shadow saw since the last call: (monotonic time, id)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__arrivals", timeout=30) as resp:  # noqa: S310
        text = resp.read().decode()
    out = []
    for line in text.splitlines():
        stamp, _, ident = line.partition(" ")
        out.append((float(stamp), ident))
    return out
