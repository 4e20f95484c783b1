"""pcap export: tshark (Debian's) decodes every request and response with headers and body."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from interchange import pcap
from interchange.exchange import pairs
from tests.interchange.events import event, sample
from tests.interchange.tshark import decode, needs_tshark


def write(tmp_path: Path, events: list[Any]) -> Path:
    path = tmp_path / "x.pcap"
    with path.open("wb") as fh:
        assert pcap.write(events, fh) == len(events)
    return path


@needs_tshark
def test_tshark_decodes_every_exchange_with_headers_and_body(tmp_path: Path) -> None:
    events = sample()
    events.append(event(7, client=("::1", 40100), server=("::1", 8080)))
    big = bytes(range(256)) * 400  # 70 segments
    events.append(
        event(
            8,
            method="POST",
            path=b"/big",
            body=big,
            headers=[b"Host", b"h", b"Content-Length", str(len(big)).encode()],
        )
    )
    decoded = decode(write(tmp_path, events))
    requests = [d for d in decoded if d.method is not None]
    responses = [d for d in decoded if d.status is not None]
    assert len(requests) == len(events)
    assert len(responses) == len([e for e in events if e["response"] is not None])
    assert all(d.checksum_ok for d in decoded)
    by_stream = {d.stream: d for d in responses}
    for ev, req in zip(events, requests, strict=True):
        assert req.method == ev["method"]
        assert req.uri == ev["path"]
        assert req.body == ev["request"]["body"]
        flat = ev["request"]["headers"]
        assert req.headers == [n + b": " + v for n, v in pairs(flat)]
        if ev["response"] is not None:
            resp = by_stream[req.stream]
            assert resp.status == ev["response"]["status"]
            assert resp.body == ev["response"]["message"]["body"]


@needs_tshark
def test_overlapping_exchanges_on_one_client_port_get_separate_streams(tmp_path: Path) -> None:
    events = [event(0), event(0, id="ex-0b", path=b"/second")]  # same start, same client port
    decoded = decode(write(tmp_path, events))
    assert len(decoded) == 4 and len({d.stream for d in decoded}) == 2


def test_file_header_and_ip_checksum(tmp_path: Path) -> None:
    data = write(tmp_path, [event(0)]).read_bytes()
    magic, major, minor, _, _, _, link = struct.unpack("<IHHiIII", data[:24])
    assert (magic, major, minor, link) == (0xA1B2C3D4, 2, 4, 1)
    ip = data[40 + 14 : 40 + 34]
    assert pcap._checksum(ip) == 0  # a valid header sums to zero
