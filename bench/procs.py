"""Process and port helpers shared by the benchmark scripts (bench/*.py).

The scripts run as `python bench/NAME.py`, so this folder is on `sys.path`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def affinity(cpus: set[int] | None) -> Callable[[], None] | None:
    """A `preexec_fn` that pins the child to `cpus` (None when there is nothing to pin)."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def start(
    args: Sequence[str], cpus: set[int] | None, log: Path, stdout: int | None = None
) -> subprocess.Popen[bytes]:
    """Start `args` with stderr (and stdout unless given) appended to `log`, pinned to `cpus`."""

    with open(log, "ab") as err:
        return subprocess.Popen(
            list(args),
            stdout=stdout if stdout is not None else err,
            stderr=err,
            stdin=subprocess.DEVNULL,
            preexec_fn=affinity(cpus),  # noqa: PLW1509 (only sets CPU affinity)
        )


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_broker(
    topics: Sequence[str], cpus: set[int] | None, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `trafficmirror dev-kafka` with `topics` (NAME:PARTITIONS); (process, bootstrap).

    Raises RuntimeError (after stopping it) when it does not print its bootstrap line.
    """
    args = [sys.executable, "-m", "trafficmirror", "dev-kafka", "--brokers", "1"]
    for topic in topics:
        args += ["--topic", topic]
    broker = start(args, cpus, log, stdout=subprocess.PIPE)
    assert broker.stdout is not None
    first = broker.stdout.readline().decode().strip()
    if not first.startswith("bootstrap.servers="):
        stop(broker)
        raise RuntimeError(f"dev-kafka did not start: {first!r} (log: {log})")
    return broker, first.split("=", 1)[1]


@dataclass
class WrkRun:
    """What one wrk run measured."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors, timeouts and non-2xx/3xx answers
    requests: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def run_wrk(url: str, connections: int, duration: float, cpus: set[int] | None) -> WrkRun:
    """`wrk -t1`, `connections` keep-alive connections for `duration` s, pinned to `cpus`."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=affinity(cpus),  # noqa: PLW1509 (only sets CPU affinity)
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    # Anchored: the thread stats line also ends in a percentage ("... 67.50%").
    p50 = _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M)[1])  # type: ignore[index]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors += int(non2xx[1]) if non2xx else 0
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    return WrkRun(rps, p50, p99, errors, requests)
