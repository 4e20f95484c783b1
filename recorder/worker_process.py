"""One worker of `record --workers N`: the embedded recorder in a child process.

`recorder.workers` starts this module as `python -m recorder.worker_process FD`
and writes a pickled `WorkerSpec` to its stdin. The worker runs the same
`recorder.run.serve()` as a single `record` (same addons, same signal handling
and shutdown), on `recorder.reuseport.ReusePortLoop` so its listening socket
shares the port with its siblings. It talks to the supervisor through pipe FD,
one JSON object per line: a status every `STATUS_INTERVAL` seconds (listening,
the same readiness `/readyz` asks a single recorder), then its final counters
(`recorder.accounting.Counts`), or the one-line error it could not start with.
Its own summary line is left to the supervisor, which logs one for all workers
(a worker's own is shown with -v).
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import json
import logging
import os
import pickle
import signal
import sys
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from recorder.accounting import SUMMARY_PREFIX
from recorder.config import RecordConfig
from recorder.reuseport import ReusePortLoop
from trafficmirror.plumbing.errors import TrafficMirrorError

logger = logging.getLogger(__name__)

#: Seconds between two status messages of a worker.
STATUS_INTERVAL = 1.0


@dataclass(frozen=True)
class WorkerSpec:
    """What the supervisor tells a worker: its config, name and how to log."""

    config: RecordConfig
    name: str
    log_level: int
    parent_pid: int


class Message(TypedDict, total=False):
    """One line on the status pipe."""

    kind: Literal["status", "counts", "error"]
    listening: bool
    ready: str | None
    counts: dict[str, int]
    message: str
    code: int


class Channel:
    """The write end of the status pipe; a supervisor that is gone is ignored."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, message: Message) -> None:
        # One short line is written whole (under PIPE_BUF), never interleaved.
        data = json.dumps(message).encode() + b"\n"
        try:
            os.write(self.fd, data)
        except OSError:
            pass  # the supervisor died; PR_SET_PDEATHSIG stops this worker


def counts_of(recorder: Any) -> dict[str, int]:
    """The recorder's final counters (`Recorder.last_counts`, kept when it stopped)."""
    counts = recorder.last_counts if recorder.last_counts is not None else recorder.counts()
    return dataclasses.asdict(counts)


def _status() -> Message:
    from mitmproxy import ctx

    master: Any = getattr(ctx, "master", None)
    if master is None:
        return {"kind": "status", "listening": False, "ready": "starting"}
    server = master.addons.get("proxyserver")
    recorder = master.addons.get("recorder")
    try:
        listening = bool(server.listen_addrs())
    except Exception:  # mitmproxy is still setting up or already stopping
        listening = False
    # The check a single recorder's /readyz asks (proxy running, Kafka reached).
    ready = recorder._ready() if recorder is not None else "starting"
    return {"kind": "status", "listening": listening, "ready": ready}


async def _report(channel: Channel) -> None:
    while True:
        channel.send(_status())
        await asyncio.sleep(STATUS_INTERVAL)


async def _run(spec: WorkerSpec, channel: Channel) -> Any:
    from recorder.lean import lighten
    from recorder.run import serve

    # As a single `record` does (recorder.run.run_recorder), in this worker's process.
    lighten()

    reporter = asyncio.get_running_loop().create_task(_report(channel))
    try:
        return await serve(spec.config.mitmproxy_options())
    finally:
        reporter.cancel()


class _WorkerSummary(logging.Filter):
    """Shows a worker's own summary line as a DEBUG line, with -v only: the supervisor
    logs the one summary of all workers."""

    def __init__(self, show: bool) -> None:
        super().__init__()
        self.show = show

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(SUMMARY_PREFIX):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.show


def _setup_logging(spec: WorkerSpec) -> None:
    from trafficmirror.plumbing import logs

    level = spec.log_level
    logs.setup(verbose=level <= logging.DEBUG, quiet=level >= logging.WARNING)
    formatter = logging.Formatter(
        f"%(asctime)s %(levelname)s %(name)s [{spec.name}]: %(message)s", "%H:%M:%S"
    )
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_WorkerSummary(show=level <= logging.DEBUG))


def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM this worker (a graceful stop) when the supervisor dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # it died before prctl took effect
        sys.exit(1)


def main(argv: list[str]) -> int:
    """Run one worker; the exit code is 0 after a clean stop."""
    channel = Channel(int(argv[1]))
    # The spec comes from the supervisor that started this process, over its own pipe.
    spec: WorkerSpec = pickle.load(sys.stdin.buffer)  # noqa: S301
    _die_with_parent(spec.parent_pid)
    _setup_logging(spec)
    port = spec.config.listen_port
    try:
        with asyncio.Runner(loop_factory=lambda: ReusePortLoop(port)) as runner:
            recorder = runner.run(_run(spec, channel))
    except TrafficMirrorError as exc:
        channel.send({"kind": "error", "message": str(exc), "code": exc.exit_code})
        return exc.exit_code
    channel.send({"kind": "counts", "counts": counts_of(recorder)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
