"""pcap export: tshark (Debian's) decodes every request and response with headers and body."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from interchange import pcap
from tests.interchange.events import event, sample

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")


def tshark_http(path: Path, *extra: str) -> list[dict[str, Any]]:
    """The `http` layer of every HTTP packet tshark decodes in `path`, plus tcp fields."""
    out = subprocess.run(
        [
            str(TSHARK),
            "-r",
            str(path),
            "-o",
            "tcp.check_checksum:TRUE",
            *extra,
            "-Y",
            "http",
            "-T",
            "json",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    packets = json.loads(out.stdout)
    return [p["_source"]["layers"] for p in packets]


def write(tmp_path: Path, events: list[Any]) -> Path:
    path = tmp_path / "x.pcap"
    with path.open("wb") as fh:
        assert pcap.write(events, fh) == len(events)
    return path


@needs_tshark
def test_tshark_decodes_every_exchange(tmp_path: Path) -> None:
    events = sample()
    events.append(event(7, client=("::1", 40100), server=("::1", 8080)))
    big = bytes(range(256)) * 400  # many segments
    events.append(
        event(
            8,
            method="POST",
            path=b"/big",
            body=big,
            headers=[b"Host", b"h", b"Content-Length", str(len(big)).encode()],
        )
    )
    layers = tshark_http(write(tmp_path, events))
    requests = [ly for ly in layers if "http.request.method" in json.dumps(ly.get("http", {}))]
    responses = [ly for ly in layers if "http.response.code" in json.dumps(ly.get("http", {}))]
    assert len(requests) == len(events)
    assert len(responses) == len([e for e in events if e["response"] is not None])
    for ly in layers:
        assert ly["tcp"]["tcp.checksum.status"] == "1", ly["tcp"]  # good
    bodies = {ly["http"].get("http.file_data") for ly in requests}
    assert '{"sku": "A-1", "qty": 2}' in bodies
    by_uri = {
        ly["http"]["http.request.uri"]
        if "http.request.uri" in ly["http"]
        else next(
            v["http.request.uri"]
            for k, v in ly["http"].items()
            if isinstance(v, dict) and "http.request.uri" in v
        ): ly
        for ly in requests
    }
    assert "/big" in by_uri and "/orders" in by_uri


@needs_tshark
def test_overlapping_exchanges_on_one_client_port_get_separate_streams(tmp_path: Path) -> None:
    events = [event(0), event(0, id="ex-0b", path=b"/second")]  # same start, same client port
    layers = tshark_http(write(tmp_path, events))
    streams = {ly["tcp"]["tcp.stream"] for ly in layers}
    assert len(layers) == 4 and len(streams) == 2


def test_header_and_checksums(tmp_path: Path) -> None:
    data = write(tmp_path, [event(0)]).read_bytes()
    magic, major, minor, _, _, snaplen, link = struct.unpack("<IHHiIII", data[:24])
    assert (magic, major, minor, link) == (0xA1B2C3D4, 2, 4, 1)
    first_len = struct.unpack("<IIII", data[24:40])[2]
    frame = data[40 : 40 + first_len]
    ip = frame[14:34]
    assert pcap._checksum(ip) == 0  # a valid header sums to zero
