"""`trafficmirror worker`: start a group member (`member.Worker`) and its metrics server.

`run_worker()` binds the health and metrics port before anything else starts
(a port in use is a one-line usage error, not a half-started worker), builds
the `Worker`, and runs it under `StopSignals` until SIGTERM/SIGINT or the
caller's event. The loop itself, rebalances, sessions and the drain are in
`replayer.consuming.member`; `WorkerConfig` (the options) lives there too and
is re-exported here with `Worker`.
"""

from __future__ import annotations

import logging
import threading

from replayer.consuming.member import Worker, WorkerConfig
from replayer.eventloop import loop_factory
from replayer.results.summary import Stats
from replayer.sending.sender import Transport
from replayer.stopping import StopSignals
from trafficmirror.plumbing.errors import ConfigError
from trafficmirror.plumbing.health import HealthServer, HealthState

__all__ = ["Worker", "WorkerConfig", "run_worker"]

logger = logging.getLogger(__name__)


def run_worker(
    config: WorkerConfig,
    *,
    transport: Transport | None = None,
    stop_event: threading.Event | None = None,
) -> Stats:
    """Replay `config.topic` as a member of `config.group` until stopped; return the counts.

    Every replay is compared with the recorded response and its result written
    to `<topic>.results`; records that cannot be decoded or sent go to
    `<topic>.dlq`. Stops on SIGTERM/SIGINT (when called in the main thread) or
    when `stop_event` is set. Raises `TopicNotFound` if the topic does not
    exist, `KafkaUnavailable` on a fatal consumer error. `transport` replaces
    the HTTP client (tests).
    """
    loop_factory()  # a bad TRAFFICMIRROR_EVENT_LOOP is a usage error before anything starts
    state = HealthState()
    # Bound before anything else starts: a port in use is one line, not a half-started worker.
    health = _health_server(config, state)
    try:
        worker = Worker(config, transport=transport, health=state)
    except BaseException:
        if health is not None:
            health.close()
        raise
    if health is not None:
        health.start()
        logger.info("health and metrics on http://%s:%d/metrics", config.metrics_host, health.port)
    try:
        with StopSignals(stop_event, "draining in-flight requests") as stop:
            return worker.run(stop)
    finally:
        if health is not None:
            health.close()


def _health_server(config: WorkerConfig, state: HealthState) -> HealthServer | None:
    """The metrics server, bound but not serving yet; `ConfigError` when it cannot listen."""
    if config.metrics_port is None:
        return None
    try:
        return HealthServer(state, host=config.metrics_host, port=config.metrics_port)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {config.metrics_host}:{config.metrics_port} "
            f"(--metrics-port): {exc.strerror or exc}"
        ) from None
