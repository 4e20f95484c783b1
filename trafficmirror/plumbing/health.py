"""Health and metrics endpoints shared by the recorder and the replayer.

A tiny threaded HTTP server answers:

* `/healthz`: 200 while the process's main loop is alive (liveness);
* `/readyz`: 200 once the component says it is ready (Kafka reachable, an
  assignment received, ...), 503 with the reason otherwise;
* `/metrics`: Prometheus text format from the process's registry.

It runs on its own daemon thread so a slow scrape never touches the data path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

#: A readiness check returns None when ready, or a one-line reason when not.
ReadyCheck = Callable[[], str | None]


class HealthState:
    """What the endpoints report; the owning component updates it."""

    def __init__(self, stale_after: float = 30.0) -> None:
        self._ready_check: ReadyCheck = lambda: "starting"
        self._beat = time.monotonic()
        self._stale_after = stale_after

    def set_ready_check(self, check: ReadyCheck) -> None:
        """Install the function `/readyz` asks."""
        self._ready_check = check

    def beat(self) -> None:
        """Called by the main loop; `/healthz` fails if it stops being called."""
        self._beat = time.monotonic()

    def alive(self) -> str | None:
        idle = time.monotonic() - self._beat
        if idle > self._stale_after:
            return f"main loop stalled for {idle:.0f}s"
        return None

    def ready(self) -> str | None:
        try:
            return self._ready_check()
        except Exception as exc:  # a broken check must answer, not kill the server
            return f"readiness check failed: {exc}"


class HealthServer:
    """Serves `/healthz`, `/readyz` and `/metrics` on `host:port` (port 0 = any free)."""

    def __init__(
        self,
        state: HealthState,
        host: str = "127.0.0.1",
        port: int = 0,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.state = state
        handler = _make_handler(state, registry)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="trafficmirror-health", daemon=True
        )

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving (if it started) and free the port."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


def _make_handler(state: HealthState, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._status(state.alive())
            elif path == "/readyz":
                self._status(state.ready())
            else:
                self._send(404, b"not found\n", "text/plain")

        def _status(self, problem: str | None) -> None:
            if problem is None:
                self._send(200, b"ok\n", "text/plain")
            else:
                self._send(503, problem.encode() + b"\n", "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the real logs

    return Handler
