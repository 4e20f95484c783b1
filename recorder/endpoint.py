"""The recorder's health endpoint: /healthz, /readyz and /metrics on `--metrics-port`.

Served only when `trafficmirror_metrics_port` is set. /readyz asks the
recorder (`Recorder._ready`: proxy listening, Kafka reached); /healthz fails
when mitmproxy's event loop stops running the beat this module schedules
every few seconds, which is what a stuck sidecar looks like from outside. A
port that cannot be bound is a one-line option error at start, before the
recorder says it is recording.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from recorder.options import options_error
from trafficmirror.plumbing.health import HealthServer, HealthState

#: Seconds between beats of the event loop (/healthz).
BEAT_SECONDS = 5


class HealthEndpoint:
    """The HTTP server and the event-loop beat; `ready` answers None when ready, else why not."""

    def __init__(self, ready: Callable[[], str | None]) -> None:
        self._ready = ready
        self._server: HealthServer | None = None
        self._state: HealthState | None = None
        self._beat_task: asyncio.Task[None] | None = None

    def configure(self, host: str, port: int | None) -> None:
        """Serve on `host:port` (None: not at all), replacing a server already running."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if port is None:
            return
        if not 0 <= port <= 65535:
            raise options_error(f"trafficmirror_metrics_port {port} is out of range")
        state = HealthState()
        state.set_ready_check(self._ready)
        try:
            self._server = HealthServer(state, host, port).start()
        except OSError as exc:
            raise options_error(
                f"trafficmirror: cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
            ) from None
        self._state = state

    def start_beat(self) -> None:
        """Start beating on the running event loop (once; nothing without a server)."""
        if self._state is not None and self._beat_task is None:
            self._beat_task = asyncio.get_running_loop().create_task(self._beat(self._state))

    async def _beat(self, state: HealthState) -> None:
        while True:
            state.beat()
            await asyncio.sleep(BEAT_SECONDS)

    def close(self) -> None:
        """Stop the beat and the server."""
        if self._beat_task is not None:
            self._beat_task.cancel()
            self._beat_task = None
        if self._server is not None:
            self._server.close()
            self._server = None
