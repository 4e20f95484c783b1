"""Events for the interchange tests: varied enough to catch a format losing something."""

from __future__ import annotations

from typing import Any

from schemas.records import HttpExchange

BASE_US = 1_764_000_000_000_000


def event(
    n: int,
    *,
    method: str = "GET",
    path: bytes = b"/items?id=1&q=",
    headers: list[bytes] | None = None,
    body: bytes = b"",
    status: int | None = 200,
    response_headers: list[bytes] | None = None,
    response_body: bytes = b'{"ok": true}',
    client: tuple[str, int] = ("127.0.0.1", 40000),
    server: tuple[str, int] | None = ("127.0.0.1", 8080),
    version: str = "HTTP/1.1",
    **extra: Any,
) -> HttpExchange:
    start = BASE_US + n * 10_000
    req_headers = headers if headers is not None else [b"Host", b"shop.test:8080", b"X-Tag", b"a"]
    if body and headers is None:
        req_headers += [b"Content-Type", b"application/json"]
        req_headers += [b"Content-Length", str(len(body)).encode()]
    resp_headers = response_headers
    if resp_headers is None:
        resp_headers = [
            b"Content-Type",
            b"application/json",
            b"Content-Length",
            str(len(response_body)).encode(),
        ]
    response = None
    if status is not None:
        response = {
            "status": status,
            "reason": b"OK",
            "http_version": version,
            "message": {
                "headers": resp_headers,
                "body": response_body,
                "body_truncated": False,
                "body_length": len(response_body),
                "trailers": None,
            },
        }
    out: dict[str, Any] = {
        "id": f"ex-{n}",
        "request_start_us": start,
        "request_end_us": start + 150,
        "response_start_us": start + 2_150 if response else None,
        "response_end_us": start + 2_400 if response else None,
        "client": {"host": client[0], "port": client[1]},
        "server": {"host": server[0], "port": server[1]} if server else None,
        "scheme": "http",
        "method": method,
        "authority": "shop.test:8080",
        "path": path,
        "http_version": version,
        "request": {
            "headers": req_headers,
            "body": body,
            "body_truncated": False,
            "body_length": len(body),
            "trailers": None,
        },
        "response": response,
        "error": None if response else "upstream refused",
        "recorder": {
            "recorder_id": "rec-1",
            "sampling_rate": 1.0,
            "redactions": [],
            "capture": "proxy" if response else "mirror",
        },
        "kind": "http",
        "websocket": None,
    }
    out.update(extra)
    return out  # type: ignore[return-value]


def sample() -> list[HttpExchange]:
    """A GET, a JSON POST, a binary upload, repeated headers, a 404, no response, a UTF-8 path."""
    return [
        event(0),
        event(1, method="POST", path=b"/orders", body=b'{"sku": "A-1", "qty": 2}'),
        event(
            2,
            method="PUT",
            path=b"/blob/7",
            body=bytes(range(256)) * 3,
            headers=[
                b"Host",
                b"shop.test:8080",
                b"Content-Type",
                b"application/octet-stream",
                b"Content-Length",
                b"768",
            ],
            response_body=b"\x89PNG\r\n\x1a\n\x00\xff",
            response_headers=[b"Content-Type", b"image/png", b"Content-Length", b"10"],
        ),
        event(
            3,
            headers=[
                b"Host",
                b"shop.test:8080",
                b"Accept",
                b"a/b",
                b"Accept",
                b"c/d",
                b"X-Trace",
                b"t-1",
            ],
            client=("127.0.0.1", 40001),
        ),
        event(
            4,
            path=b"/missing",
            status=404,
            response_body=b"not here",
            response_headers=[b"Content-Length", b"8"],
        ),
        event(5, method="POST", path=b"/mirror", body=b"a=1", status=None),
        event(6, path="/caf\u00e9?name=J\u00fcrgen".encode()),
    ]
