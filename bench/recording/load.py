"""Load on a proxy and what it measured: wrk, or a small asyncio client when wrk is missing.

`Result` is one measurement (req/s, latency, errors, and the proxy's CPU time
per request, read from /proc so it counts all of the proxy's threads). The
fallback load generator runs in a process of its own (`bench/recorder.py
--_pyload`), so it never shares an interpreter with the harness.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from procs import run_wrk

#: What every load generator asks the proxy for.
PATH = "/hello?x=1"
#: The script whose hidden `--_pyload` option runs `pyload_main`.
_ENTRY = Path(__file__).resolve().parent.parent / "recorder.py"


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    requests: int = 0
    #: CPU time of the proxy process (all its threads) per request, µs.
    cpu_us: float = 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` and all its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port: int, connections: int, duration: float, cpus: set[int] | None) -> Result:
    run = run_wrk(f"http://127.0.0.1:{port}{PATH}", connections, duration, cpus)
    return Result(run.rps, run.p50_ms, run.p99_ms, run.errors, run.requests)


async def _pyload(port: int, connections: int, duration: float) -> tuple[int, int, list[float]]:
    request = f"GET {PATH} HTTP/1.1\r\nHost: bench.example\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration

    async def one() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?i)content-length:\s*(\d+)", head)
                await reader.readexactly(int(match[1]) if match else 0)
                latencies.append(time.perf_counter() - t0)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))
    return len(latencies), errors, latencies


def pyload_main(port: int, connections: int, duration: float) -> None:
    """Entry point of the fallback load generator process: prints `rps p50 p99 errors`."""
    count, errors, lat = asyncio.run(_pyload(port, connections, duration))
    lat.sort()
    p50 = lat[len(lat) // 2] * 1000
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    print(f"{count / duration} {p50} {p99} {errors} {count}")


def pyload(port: int, connections: int, duration: float, cpus: set[int] | None) -> Result:
    out = subprocess.run(
        [sys.executable, str(_ENTRY), "--_pyload", str(port), str(connections), str(duration)],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,  # noqa: PLW1509
    ).stdout.split()
    return Result(float(out[0]), float(out[1]), float(out[2]), int(out[3]), int(out[4]))


def load_together(
    ports: dict[str, int], connections: int, duration: float, cpus: set[int] | None
) -> dict[str, Result]:
    """One wrk per port, all at the same time; their results by name."""
    results: dict[str, Result] = {}

    def one(name: str, port: int) -> None:
        results[name] = wrk(port, connections, duration, cpus)

    threads = [threading.Thread(target=one, args=item) for item in ports.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
