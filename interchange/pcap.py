"""pcap captures of exchanges: synthetic TCP streams that Wireshark, Zeek and Suricata read.

Each exchange becomes one TCP connection on Ethernet: a three-way handshake,
the request as HTTP/1.x (`interchange.http1`) in MSS-sized segments, the
server's acknowledgement, the response, and a FIN from each side, with valid
IP and TCP checksums (Suricata drops packets without them). Addresses and
ports are the recorded client and server (the authority's when no server was
recorded); a name or an unknown address becomes a documentation address
(192.0.2.0/24 for clients, 198.51.100.0/24 for servers) and an unknown client
port an ephemeral one; a client port still in use by an earlier, overlapping
exchange (HTTP/2 multiplexing) is replaced by a free one, so streams never mix.
Packet times come from the recorded timestamps (microseconds). Written with
the standard library (`struct`): the format is small and fixed, and scapy
would cost a large dependency for it. The capture is built in memory and
sorted by time before it is written.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

from interchange import http1
from interchange.exchange import target_address
from schemas.records import HttpExchange

_MAGIC = 0xA1B2C3D4  # microsecond timestamps
_LINKTYPE_ETHERNET = 1
_SNAPLEN = 262144
_SYN, _FIN, _PSH, _ACK = 0x02, 0x01, 0x08, 0x10
_CLIENT_MAC = bytes.fromhex("020000000001")
_SERVER_MAC = bytes.fromhex("020000000002")
_EPHEMERAL = 49152
_LITTLE = sys.byteorder == "little"
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`, as a number to pack big-endian."""
    if len(data) % 2:
        data += b"\0"
    # The ones' complement sum does not depend on byte order (RFC 1071 2.B): sum the
    # 16-bit words in the machine's order (fast), and swap the result back if needed.
    total = sum(memoryview(data).cast("H"))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    result = ~total & 0xFFFF
    return ((result & 0xFF) << 8 | result >> 8) if _LITTLE else result


def _synthetic(text: str, network: str) -> ipaddress.IPv4Address:
    base = ipaddress.IPv4Network(network)
    digest = hashlib.blake2b(text.encode(), digest_size=2).digest()
    return base[1 + digest[0] % 254]


def _ip(host: str) -> IPAddr | None:
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass
class _Flow:
    """One synthetic TCP connection: its endpoints and both sides' next sequence numbers."""

    client: IPAddr
    server: IPAddr
    client_port: int
    server_port: int
    client_seq: int
    server_seq: int

    def __post_init__(self) -> None:
        # ipaddress packs on every access: once per connection is enough.
        self._client = self.client.packed
        self._server = self.server.packed
        self._v4 = self.client.version == 4

    def packet(
        self, from_client: bool, flags: int, payload: bytes = b"", mss: bool = False
    ) -> bytes:
        src, dst = (self._client, self._server) if from_client else (self._server, self._client)
        sport, dport = (
            (self.client_port, self.server_port)
            if from_client
            else (self.server_port, self.client_port)
        )
        seq = self.client_seq if from_client else self.server_seq
        ack = self.server_seq if from_client else self.client_seq
        options = struct.pack("!BBH", 2, 4, 1460 if self._v4 else 1440) if mss else b""
        offset = (20 + len(options)) // 4 << 4
        ack_value = ack if flags & _ACK else 0
        head = struct.pack("!HHIIBBHHH", sport, dport, seq, ack_value, offset, flags, 65535, 0, 0)
        segment = head + options + payload
        length = len(segment)
        if self._v4:
            pseudo = src + dst + struct.pack("!BBH", 0, 6, length)
        else:
            pseudo = src + dst + struct.pack("!I3xB", length, 6)
        check = _checksum(pseudo + segment)
        segment = segment[:16] + struct.pack("!H", check) + segment[18:]
        if self._v4:
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0x4000, 64, 6, 0, src, dst)
            ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
            ethertype = 0x0800
        else:
            ip = struct.pack("!IHBB16s16s", 6 << 28, length, 6, 64, src, dst)
            ethertype = 0x86DD
        macs = _SERVER_MAC + _CLIENT_MAC if from_client else _CLIENT_MAC + _SERVER_MAC
        # Sequence space: SYN and FIN count as one byte each.
        step = len(payload) + (1 if flags & (_SYN | _FIN) else 0)
        if from_client:
            self.client_seq = (self.client_seq + step) & 0xFFFFFFFF
        else:
            self.server_seq = (self.server_seq + step) & 0xFFFFFFFF
        return macs + struct.pack("!H", ethertype) + ip + segment


class _Ports:
    """Client ports per (client, server, server port), busy until their connection's last packet."""

    def __init__(self) -> None:
        self.busy: dict[tuple[IPAddr, int, IPAddr, int], int] = {}
        self.next = _EPHEMERAL

    def choose(
        self, client: IPAddr, port: int, server: IPAddr, sport: int, start: int, end: int
    ) -> int:
        if port <= 0 or self.busy.get((client, port, server, sport), -1) >= start:
            while True:
                port = self.next
                self.next = _EPHEMERAL + (self.next + 1 - _EPHEMERAL) % (65536 - _EPHEMERAL)
                if self.busy.get((client, port, server, sport), -1) < start:
                    break
        self.busy[(client, port, server, sport)] = end
        return port


def _segments(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _spread(start: int, end: int | None, count: int) -> list[int]:
    end = start if end is None or end < start else end
    if count <= 1:
        return [start] * count
    return [start + (end - start) * i // (count - 1) for i in range(count)]


def packets(event: HttpExchange, ports: _Ports) -> list[tuple[int, bytes]]:
    """(time in µs, Ethernet frame) of every packet of the exchange's connection."""
    target = target_address(event)
    server = _ip(target["host"]) or _synthetic(target["host"], "198.51.100.0/24")
    client = _ip(event["client"]["host"])
    if client is None or client.version != server.version:
        client = _synthetic(event["client"]["host"] or event["id"], "192.0.2.0/24")
        if server.version != 4:
            server = _synthetic(target["host"], "198.51.100.0/24")
    request = http1.request_bytes(event)
    response = http1.response_bytes(event)
    start = event["request_start_us"]
    request_end = max(start, event["request_end_us"] or start)
    response_start = max(request_end, event["response_start_us"] or request_end)
    response_end = max(response_start, event["response_end_us"] or response_start)
    last = (response_end if response is not None else request_end) + 3
    seed = hashlib.blake2b(event["id"].encode(), digest_size=8).digest()
    isn_client, isn_server = struct.unpack("!II", seed)
    flow = _Flow(
        client,
        server,
        ports.choose(client, event["client"]["port"], server, target["port"], start - 3, last),
        target["port"],
        isn_client,
        isn_server,
    )
    mss = 1460 if server.version == 4 else 1440
    out = [
        (start - 3, flow.packet(True, _SYN, mss=True)),
        (start - 2, flow.packet(False, _SYN | _ACK, mss=True)),
        (start - 1, flow.packet(True, _ACK)),
    ]
    parts = _segments(request, mss)
    for i, (when, part) in enumerate(
        zip(_spread(start, request_end, len(parts)), parts, strict=True)
    ):
        out.append((when, flow.packet(True, _ACK | (_PSH if i == len(parts) - 1 else 0), part)))
    out.append((request_end, flow.packet(False, _ACK)))
    end = request_end
    if response is not None:
        parts = _segments(response, mss)
        times = _spread(response_start, response_end, len(parts))
        for i, (when, part) in enumerate(zip(times, parts, strict=True)):
            out.append(
                (when, flow.packet(False, _ACK | (_PSH if i == len(parts) - 1 else 0), part))
            )
        out.append((response_end, flow.packet(True, _ACK)))
        end = response_end
    out += [
        (end + 1, flow.packet(True, _FIN | _ACK)),
        (end + 2, flow.packet(False, _FIN | _ACK)),
        (end + 3, flow.packet(True, _ACK)),
    ]
    return out


def write(events: Iterable[HttpExchange], out: IO[bytes]) -> int:
    """Write a pcap of `events` (in recorded order) to `out`; returns the number of exchanges."""
    ports = _Ports()
    frames: list[tuple[int, int, int, bytes]] = []
    count = 0
    for count, event in enumerate(events, 1):
        for index, (when, frame) in enumerate(packets(event, ports)):
            frames.append((when, count, index, frame))
    frames.sort(key=lambda f: (f[0], f[1], f[2]))
    out.write(struct.pack("<IHHiIII", _MAGIC, 2, 4, 0, 0, _SNAPLEN, _LINKTYPE_ETHERNET))
    for when, _, _, frame in frames:
        seconds, micros = divmod(when, 1_000_000)
        out.write(struct.pack("<IIII", seconds, micros, len(frame), len(frame)) + frame)
    return count
