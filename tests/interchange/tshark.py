"""Reading a pcap back with tshark (Debian's): every HTTP message it decodes, from PDML.

PDML (`-T pdml`) keeps every header line and gives each field's raw bytes in
hex, so bodies compare byte for byte (JSON output drops repeated keys and
shows binary bodies as text).
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET  # noqa: S405 - tshark's own output
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")


@dataclass
class Decoded:
    """One HTTP message as tshark decoded it."""

    stream: int
    method: str | None = None
    uri: bytes | None = None
    status: int | None = None
    headers: list[bytes] = field(default_factory=list)
    body: bytes = b""
    checksum_ok: bool = False


def decode(path: Path, *options: str) -> list[Decoded]:
    """Every HTTP request and response tshark finds in `path`, in capture order."""
    out = subprocess.run(
        [
            str(TSHARK),
            "-r",
            str(path),
            "-o",
            "tcp.check_checksum:TRUE",
            *options,
            "-Y",
            "http",
            "-T",
            "pdml",
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    root = ET.fromstring(out.stdout)  # noqa: S314 - tshark's own output
    found = []
    for packet in root.iter("packet"):
        fields = {f.get("name"): f for f in packet.iter("field")}
        item = Decoded(stream=int(fields["tcp.stream"].get("show", "-1")))
        item.checksum_ok = fields.get("tcp.checksum.status") is not None and (
            fields["tcp.checksum.status"].get("show") == "1"
        )
        for f in packet.iter("field"):
            name = f.get("name")
            if name == "http.request.method":
                item.method = f.get("show")
            elif name == "http.request.uri":
                item.uri = _raw(f)
            elif name == "http.response.code":
                item.status = int(f.get("show", "0"))
            elif name in ("http.request.line", "http.response.line"):
                item.headers.append(_raw(f).rstrip(b"\r\n"))
            elif name == "http.file_data":
                item.body = bytes.fromhex(f.get("value", ""))
        found.append(item)
    return found


def _raw(element: ET.Element) -> bytes:
    """A field's bytes as captured (PDML's hex `value`), not tshark's display text."""
    return bytes.fromhex(element.get("value", ""))
