"""Small real HTTP servers for the demo, the tests and the benchmarks.

* `SampleApp`, the "production" app, answers any request with a JSON summary
  of what it received (method, path, query, body length and hash), so a
  faithful replay gets the same answer.
* `RecordingShadow`, the "shadow", answers like `SampleApp` and keeps every
  request with its arrival time and raw header list for the tests to check.
* `ShopApp` is a tiny JSON API in two versions for comparisons: v2 changes one
  field of one endpoint on purpose.

All three are aiohttp servers on 127.0.0.1, run on a private event loop in a
background thread (`start()`/`stop()`), or as a process:
`python -m trafficmirror.demo.apps app|shadow|shop-v1|shop-v2 --port N`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web


@dataclass(frozen=True)
class Received:
    """One request as the shadow saw it."""

    at: float  # time.time() on arrival
    method: str
    path: str  # raw path with query, as sent
    headers: list[tuple[bytes, bytes]]  # raw, original order and case
    body: bytes

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None


def summary(method: str, path: str, body: bytes) -> dict[str, Any]:
    """What both sample servers answer: enough to tell two requests apart."""
    return {
        "method": method,
        "path": path,
        "body_length": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }


S = TypeVar("S", bound="_Server")


async def _finish_tasks() -> None:
    """Cancel every other task of this loop and wait for them."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class _Server:
    """An aiohttp application served from a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        #: Seconds `stop()` lets requests still being answered finish (a test with a
        #: shadow that answers in 10 s sets it low, so it need not wait for them).
        self.shutdown_timeout = 60.0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def _start(self) -> None:
        self._runner = web.AppRunner(
            self._app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=self.shutdown_timeout,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        # aiohttp exposes the bound port (needed for port 0) only on the server.
        server: Any = site._server
        self.port = int(server.sockets[0].getsockname()[1])

    def start(self: S) -> S:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            # Handlers cut short by `shutdown_timeout` must end before the loop closes.
            asyncio.run_coroutine_threadsafe(_finish_tasks(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self: S) -> S:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SampleApp(_Server):
    """The production stand-in: answers a JSON summary of each request."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return self.respond(request, await request.read())

    def respond(self, request: web.Request, body: bytes) -> web.Response:
        if request.path.startswith("/bytes/"):
            size = int(request.path.rsplit("/", 1)[1] or 0)
            return web.Response(
                body=bytes(i % 251 for i in range(size)), content_type="application/octet-stream"
            )
        if request.path == "/status/500":
            return web.json_response({"error": "boom"}, status=500)
        payload = summary(request.method, request.raw_path, body)
        return web.Response(text=json.dumps(payload), content_type="application/json")


class RecordingShadow(SampleApp):
    """The shadow stand-in: answers like SampleApp and keeps what it received."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, delay: float = 0.0) -> None:
        super().__init__(host, port)
        self.delay = delay
        self._lock = threading.Lock()
        self._received: list[Received] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        item = Received(
            at=time.time(),
            method=request.method,
            path=request.raw_path,
            headers=list(request.raw_headers),
            body=body,
        )
        with self._lock:
            self._received.append(item)
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.respond(request, body)

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Wait until at least `count` requests arrived (or time runs out); return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = self.received
            if len(items) >= count:
                return items
            time.sleep(0.05)
        return self.received


class ShopApp(_Server):
    """A small JSON API; `version` "v1" is production (run twice: a baseline), "v2" a shadow.

    * `GET /users/{id}`: `{"id", "name", "email"}`; v2 upper-cases the name, the
      deliberate regression a comparison must find at `$.name`;
    * `GET /clock`: `{"timestamp", "zone"}` with the current time to the
      microsecond, plus aiohttp's Date header: two calls never agree, in any
      version, so a difference there is noise;
    * `GET /items/{id}`: `{"id", "name", "price"}`, the same in both versions;
    * anything else: 404 with a JSON error.
    """

    def __init__(self, version: str = "v1", host: str = "127.0.0.1", port: int = 0) -> None:
        if version not in ("v1", "v2"):
            raise ValueError(f"unknown ShopApp version {version!r}")
        super().__init__(host, port)
        self.version = version

    async def handle(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.strip("/").split("/")
        if parts == ["clock"]:
            now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
            return web.json_response({"timestamp": now, "zone": "UTC"})
        if len(parts) == 2 and parts[0] == "users" and parts[1].isdigit():
            number = int(parts[1])
            name = f"user {number}"
            return web.json_response(
                {
                    "id": number,
                    "name": name.upper() if self.version == "v2" else name,
                    "email": f"user{number}@example.com",
                }
            )
        if len(parts) == 2 and parts[0] == "items" and parts[1].isdigit():
            number = int(parts[1])
            return web.json_response(
                {"id": number, "name": f"item {number}", "price": round(number * 1.25, 2)}
            )
        return web.json_response({"error": "not found"}, status=404)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a sample app or shadow server.")
    parser.add_argument("kind", choices=["app", "shadow", "shop-v1", "shop-v2"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server: _Server
    if args.kind.startswith("shop-"):
        server = ShopApp(args.kind.removeprefix("shop-"), args.host, args.port)
    else:
        server = (SampleApp if args.kind == "app" else RecordingShadow)(args.host, args.port)
    server.start()
    print(f"listening on {server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
