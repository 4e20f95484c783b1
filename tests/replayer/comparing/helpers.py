"""Shared by the comparison tests: responses built from a body (JSON when not bytes)."""

from __future__ import annotations

import json
from typing import Any

from replayer.comparing.responses import Difference, ResponseView

JSON = (b"Content-Type", b"application/json")


def resp(
    body: bytes | Any = b"",
    status: int = 200,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    **kw: Any,
) -> ResponseView:
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
        headers = (JSON, *headers)
    return ResponseView(status=status, headers=headers, body=body, **kw)


def paths(diffs: list[Difference]) -> list[tuple[str, str]]:
    return [(d.kind, d.path) for d in diffs]
