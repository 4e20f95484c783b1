"""`record --workers N`: N recorder processes on one listen port, supervised as one.

mitmproxy runs on one asyncio loop, so one recorder uses one core. Here the
`record` process becomes a supervisor: it reserves the --listen address
(`recorder.reuseport`), starts N workers (`recorder.worker_process`, each the
ordinary embedded recorder with its own Kafka producer and recorder id
`ID/w1`...), and the kernel spreads new connections over them. It serves the one
--metrics-port for all (counters summed over the workers through
prometheus_client's multiprocess mode, gauges with a `pid` label; /readyz once
every worker is ready), forwards SIGTERM/SIGINT to every worker (each drains as
a single recorder does), and logs one summary with the workers' counters added
up. A worker that dies is reported in one line; the others are stopped and the
command fails: the orchestrator restarts the whole sidecar, as it would one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Any

from recorder import reuseport
from recorder.accounting import SUMMARY_PREFIX, Counts
from recorder.config import RecordConfig
from recorder.worker_process import Message, WorkerSpec
from trafficmirror.plumbing.errors import TrafficMirrorError

logger = logging.getLogger(__name__)

#: A worker silent for this long counts as stalled (its event loop sends a status each second).
STALE_AFTER = 10.0
#: /healthz fails this long after the last moment every worker was heard from in time.
HEALTH_STALE_AFTER = 5.0


@dataclass
class Worker:
    """One child process and what it last reported."""

    name: str
    popen: subprocess.Popen[bytes]
    fd: int
    buffer: bytes = b""
    listening: bool = False
    ready: str | None = "starting"
    heard: float = field(default_factory=time.monotonic)
    counts: dict[str, int] | None = None
    error: str | None = None
    error_code: int = 1
    exited: bool = False

    def handle(self, message: Message) -> None:
        kind = message.get("kind")
        self.heard = time.monotonic()
        if kind == "status":
            self.listening = bool(message.get("listening"))
            self.ready = message.get("ready")
        elif kind == "counts":
            self.counts = message.get("counts")
        elif kind == "error":
            self.error = message.get("message")
            self.error_code = message.get("code", 1)


def exit_reason(code: int) -> str:
    """`exit code 1`, `killed by SIGKILL`."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def add_counts(workers: list[Worker]) -> Counts:
    """The counters of the workers that reported theirs, added up."""
    return sum((Counts(**w.counts) for w in workers if w.counts is not None), Counts())


def summary_line(counts: Counts, workers: int, missing: list[str]) -> str:
    """The combined exit summary: `Recorder`'s line for the sum, with the number of workers."""
    line = counts.line().replace(SUMMARY_PREFIX, f"{SUMMARY_PREFIX} workers={workers}", 1)
    if missing:
        line += f"; not counted: worker {', '.join(missing)} (died)"
    return line


class Supervisor:
    """Starts the workers, watches them, stops them together."""

    def __init__(self, config: RecordConfig, metrics_dir: str | None) -> None:
        self.config = config
        self.metrics_dir = metrics_dir
        self.workers: list[Worker] = []
        self.stopping = False
        self.failure: str | None = None
        self.failure_code = 1
        self.announced = False
        self._selector = selectors.DefaultSelector()

    # -- start ------------------------------------------------------------------

    def start(self) -> None:
        config = self.config
        base_id = config.recorder_id or f"{socket.gethostname()}:{config.listen_port}"
        env = dict(os.environ)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if self.metrics_dir is not None:
            env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        for number in range(1, config.workers + 1):
            if self.stopping:  # a signal came while starting: start no more
                break
            name = f"w{number}"
            worker_config = replace(
                config, recorder_id=f"{base_id}/{name}", metrics_port=None, workers=1
            )
            spec = WorkerSpec(worker_config, name, logging.getLogger().level, os.getpid())
            self.workers.append(self._spawn(spec, env))

    def _spawn(self, spec: WorkerSpec, env: dict[str, str]) -> Worker:
        read_fd, write_fd = os.pipe()
        try:
            popen = subprocess.Popen(  # noqa: S603 (this Python, this package's module)
                [sys.executable, "-m", "recorder.worker_process", str(write_fd)],
                stdin=subprocess.PIPE,
                pass_fds=(write_fd,),
                env=env,
                # Its own session: a terminal's Ctrl-C reaches the supervisor only,
                # which stops every worker once.
                start_new_session=True,
            )
        finally:
            os.close(write_fd)  # the worker holds it: end of file = worker gone
        stdin = popen.stdin  # a pipe (stdin=PIPE)
        try:
            if stdin is not None:
                with stdin:
                    stdin.write(pickle.dumps(spec))
        except OSError:
            pass  # died at once; seen by the watch loop
        os.set_blocking(read_fd, False)
        worker = Worker(spec.name, popen, read_fd)
        self._selector.register(read_fd, selectors.EVENT_READ, worker)
        return worker

    # -- run --------------------------------------------------------------------

    def on_signal(self, signum: int, _frame: Any) -> None:
        """SIGTERM/SIGINT: SIGTERM to every worker (again on each signal: cuts a drain short)."""
        if not self.stopping:
            logger.info(
                "trafficmirror recorder: %s: stopping %d workers",
                signal.Signals(signum).name,
                len(self.workers),
            )
        self.stop()

    def stop(self) -> None:
        """Ask every running worker to stop."""
        self.stopping = True
        for worker in self.workers:
            if worker.popen.poll() is None:
                worker.popen.send_signal(signal.SIGTERM)

    def watch(self, beat: Any = None) -> None:
        """Until every worker has exited: read their messages, notice who died."""
        while not all(w.exited for w in self.workers):
            for key, _ in self._selector.select(timeout=0.5):
                self._read(key.data)
            for worker in self.workers:
                if not worker.exited and worker.popen.poll() is not None:
                    self._exited(worker)
            if not self.announced and all(w.listening for w in self.workers):
                self.announced = True
                logger.info(
                    "trafficmirror recorder: %d workers listening on %s:%d",
                    len(self.workers),
                    self.config.listen_host,
                    self.config.listen_port,
                )
            if beat is not None and not self.stale():
                beat()

    def _read(self, worker: Worker) -> None:
        try:
            data = os.read(worker.fd, 65536)
        except BlockingIOError:
            return
        if not data:
            self._selector.unregister(worker.fd)
            os.close(worker.fd)
            worker.fd = -1
            return
        *lines, worker.buffer = (worker.buffer + data).split(b"\n")
        for line in lines:
            try:
                worker.handle(_decode(line))
            except ValueError:
                logger.warning("trafficmirror: unreadable message from worker %s", worker.name)

    def _exited(self, worker: Worker) -> None:
        # Its last messages may still be in the pipe: read them before judging
        # (end of file comes at once, unless something it started holds the pipe).
        deadline = time.monotonic() + 1.0
        while worker.fd != -1 and time.monotonic() < deadline:
            self._read(worker)
            if worker.fd != -1:
                time.sleep(0.01)
        worker.exited = True
        code = worker.popen.returncode
        code_if_first = 1
        if worker.error is not None:
            problem, code_if_first = worker.error, worker.error_code
        elif code == 0 and worker.counts is not None and self.stopping:
            return
        elif self.stopping and code == -signal.SIGTERM and not worker.listening:
            # Stopped while starting, before it had signal handlers: it never
            # listened (the handlers are installed first), so nothing is lost.
            worker.counts = dataclasses.asdict(Counts())
            return
        else:
            problem = f"worker {worker.name} (pid {worker.popen.pid}) {exit_reason(code)}"
            if not self.stopping:
                problem += " while serving" if worker.listening else " while starting"
        if self.failure is None:
            self.failure, self.failure_code = problem, code_if_first
            if worker.error is None:
                logger.error("trafficmirror: %s; stopping the other workers", problem)
        if not self.stopping:
            self.stop()

    def stale(self) -> bool:
        """True if a running worker has been silent for `STALE_AFTER` seconds."""
        now = time.monotonic()
        return any(now - w.heard > STALE_AFTER for w in self.workers if not w.exited)

    def ready(self) -> str | None:
        """None once every worker is ready, else the first worker's reason."""
        if self.stopping:
            return "stopping"
        if len(self.workers) < self.config.workers:
            return "starting the workers"
        now = time.monotonic()
        for worker in self.workers:
            if now - worker.heard > STALE_AFTER:
                return f"worker {worker.name}: silent for {now - worker.heard:.0f}s"
            if worker.ready is not None:
                return f"worker {worker.name}: {worker.ready}"
        return None

    def close(self) -> None:
        self._selector.close()
        for worker in self.workers:
            if worker.fd != -1:
                os.close(worker.fd)
                worker.fd = -1


def _decode(line: bytes) -> Message:
    import json

    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("not an object")
    return message  # type: ignore[return-value]


def run_record(config: RecordConfig) -> None:
    """`record`: in this process (`recorder.run`) or, with `config.workers` > 1, supervised.

    A --metrics-port that cannot be bound fails first, in one line, before
    anything is started or logged.
    """
    if config.metrics_port is not None:
        reuseport.check_free(config.metrics_host, config.metrics_port, "serve metrics on")
    if config.workers > 1:
        run_workers(config)
    else:
        # Imported here: it loads mitmproxy, which a supervisor does not need.
        from recorder.run import run_recorder

        run_recorder(config)


def run_workers(config: RecordConfig) -> None:
    """Record with `config.workers` processes until SIGINT/SIGTERM (`record --workers N`).

    Raises `TrafficMirrorError` (one line) when the address is taken, when a
    worker cannot start, or when a worker dies.
    """
    reservation = reuseport.reserve(config.listen_host, config.listen_port)
    config = replace(config, listen_port=reservation.getsockname()[1])
    _warn_oversubscribed(config.workers)
    logger.info(
        "trafficmirror recorder: %s:%d -> %s, topic %s on %s, %d workers",
        config.listen_host,
        config.listen_port,
        config.upstream,
        config.topic,
        config.settings.bootstrap_servers,
        config.workers,
    )
    metrics_dir = None
    if config.metrics_port is not None:
        metrics_dir = tempfile.mkdtemp(prefix="trafficmirror-metrics-")
    supervisor = Supervisor(config, metrics_dir)
    health = None
    previous = {
        sig: signal.signal(sig, supervisor.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        beat = None
        if metrics_dir is not None:
            health = _serve_metrics(config, metrics_dir, supervisor)
            beat = health.state.beat
        supervisor.start()
        supervisor.watch(beat)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        supervisor.stop()
        for worker in supervisor.workers:
            worker.popen.wait()
        supervisor.close()
        if health is not None:
            health.close()
        reservation.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    _finish(supervisor)


def _finish(supervisor: Supervisor) -> None:
    workers = supervisor.workers
    missing = [w.name for w in workers if w.counts is None]
    if len(missing) < len(workers):
        counts = add_counts(workers)
        lost = counts.dropped + counts.failed
        line = summary_line(counts, len(workers), missing)
        logger.log(logging.WARNING if lost or missing else logging.INFO, "%s", line)
    if supervisor.failure is not None:
        error = TrafficMirrorError(supervisor.failure)
        error.exit_code = supervisor.failure_code
        raise error


class _WorkerMetrics:
    """The workers' metrics files, summed; a file a worker is just creating is read again."""

    def __init__(self, path: str) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self._collector: Any = MultiProcessCollector(None, path=path)  # type: ignore[no-untyped-call]

    def collect(self) -> Any:
        for attempt in range(1, 4):
            try:
                return self._collector.collect()
            except (struct.error, ValueError):
                # prometheus_client creates a file, then sizes it: a scrape in
                # between finds it empty.
                time.sleep(0.05 * attempt)
        logger.warning("trafficmirror: cannot read the workers' metrics files; try again")
        return []


def _serve_metrics(config: RecordConfig, metrics_dir: str, supervisor: Supervisor) -> Any:
    from prometheus_client import CollectorRegistry

    from trafficmirror.plumbing.health import HealthServer, HealthState

    registry = CollectorRegistry()
    registry.register(_WorkerMetrics(metrics_dir))
    state = HealthState(stale_after=HEALTH_STALE_AFTER)
    state.set_ready_check(supervisor.ready)
    try:
        return HealthServer(state, config.metrics_host, config.metrics_port or 0, registry).start()
    except OSError as exc:
        raise TrafficMirrorError(
            f"cannot serve metrics on {config.metrics_host}:{config.metrics_port}: "
            f"{exc.strerror or exc}"
        ) from None


def _warn_oversubscribed(workers: int) -> None:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    if workers > cpus:
        logger.warning(
            "trafficmirror: %d workers on %d CPUs: they share the cores (and cost memory each)",
            workers,
            cpus,
        )
