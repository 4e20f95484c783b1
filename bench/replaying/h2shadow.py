"""The shadow's HTTP/2 side: h2c with prior knowledge, as little as a bench shadow needs.

`replaying/shadow.py` hands a connection here when its first bytes are the
HTTP/2 preface, so HTTP/1.1 and HTTP/2 replays meet the same process, the same
answer (the recorded response) and the same arrival notes (by the
`x-trafficmirror-replay` header). Like the HTTP/1.1 side it is written for
the benchmark, not for the world: frames are read by hand, header blocks
decoded with jh2's compiled HPACK decoder (the client's table must be
followed), every stream answered at once with fixed frames, flow control
ignored (the answers are 53 bytes, the replayer's windows megabytes). A
shadow on the h2 state machine cost about 90 µs per request, four times the
HTTP/1.1 side, and was what the HTTP/2 row measured.
"""

from __future__ import annotations

import asyncio
import struct
import time

from jh2._hazmat import Decoder

from replaying.traffic import RESPONSE_BODY

_MARK = b"x-trafficmirror-replay"
_DATA, _HEADERS, _RST, _SETTINGS, _PING, _GOAWAY, _WINDOW, _CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20

# ":status: 200" (static index 8), then content-type (index 31) and content-length
# (index 28) as literals without indexing, so the block never touches a table.
_BLOCK = (
    b"\x88"
    + b"\x0f\x10"
    + bytes([len(b"application/json")])
    + b"application/json"
    + b"\x0f\x0d"
    + bytes([len(str(len(RESPONSE_BODY)))])
    + str(len(RESPONSE_BODY)).encode()
)


def _frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream_id)
        + payload
    )


def _answer(stream_id: int) -> bytes:
    return _frame(_HEADERS, _END_HEADERS, stream_id, _BLOCK) + _frame(
        _DATA, _END_STREAM, stream_id, RESPONSE_BODY
    )


#: The server's SETTINGS: MAX_CONCURRENT_STREAMS 1000.
_SERVER_SETTINGS = _frame(_SETTINGS, 0, 0, struct.pack(">HI", 0x3, 1000))
_PREFACE_LENGTH = 24


class H2Shadow:
    """One h2c connection of the shadow: answers every stream, notes replayed arrivals."""

    def __init__(self, transport: asyncio.Transport, arrivals: list[tuple[float, bytes]]) -> None:
        self.transport = transport
        self.arrivals = arrivals
        self.decoder = Decoder()
        self.buffer = b""
        self.preface = True
        self.block = b""  # a header block continued in CONTINUATION frames
        self.block_ends_stream = False
        transport.write(_SERVER_SETTINGS)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self.buffer + data if self.buffer else data
        if self.preface:
            if len(buf) < _PREFACE_LENGTH:
                self.buffer = buf
                return
            buf = buf[_PREFACE_LENGTH:]
            self.preface = False
        out = []
        at = 0
        end = len(buf)
        while end - at >= 9:
            length = int.from_bytes(buf[at : at + 3], "big")
            if end - at < 9 + length:
                break
            kind, flags = buf[at + 3], buf[at + 4]
            stream_id = int.from_bytes(buf[at + 5 : at + 9], "big") & 0x7FFFFFFF
            payload = buf[at + 9 : at + 9 + length]
            at += 9 + length
            if kind == _HEADERS or kind == _CONTINUATION:
                if kind == _HEADERS:
                    if flags & _PADDED:
                        pad = payload[0]
                        payload = payload[1 : len(payload) - pad]
                    if flags & _PRIORITY:
                        payload = payload[5:]
                    self.block = payload
                    self.block_ends_stream = bool(flags & _END_STREAM)
                else:
                    self.block += payload
                if flags & _END_HEADERS:
                    for name, value, _ in self.decoder.decode(self.block):
                        if name == _MARK:
                            self.arrivals.append((now, bytes(value)))
                            break
                    self.block = b""
                    if self.block_ends_stream:
                        out.append(_answer(stream_id))
            elif kind == _DATA:
                if length:  # give the window back, connection and stream
                    increment = struct.pack(">I", length)
                    out.append(_frame(_WINDOW, 0, 0, increment))
                if flags & _END_STREAM:
                    out.append(_answer(stream_id))
            elif kind == _SETTINGS:
                if not flags & _ACK:
                    out.append(_frame(_SETTINGS, _ACK, 0, b""))
            elif kind == _PING:
                if not flags & _ACK:
                    out.append(_frame(_PING, _ACK, 0, payload))
            elif kind == _GOAWAY:
                self.transport.close()
                return
            # WINDOW_UPDATE, RST_STREAM, PRIORITY: nothing to do for answers this small.
        self.buffer = buf[at:]
        if out:
            self.transport.write(b"".join(out))
