"""One measured run: replay processes started together, measured at the shadow.

`replay_argv` is the `replay range` command line every row uses, `replay`
runs one or more of them at once and returns what the shadow saw (rate
between the first and the last arrival, lateness against the recorded
schedule) with the processes' CPU time per request and their own summaries.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from procs import run_wrk, start

from replaying.shadow import fetch_arrivals

#: What wrk asks the shadow for in the ceiling row.
WRK_PATH = "/api/items/1?fields=name,price"


@dataclass
class Run:
    """One replay run as the shadow saw it."""

    count: int
    rps: float
    cpu_us: float = 0.0  # CPU time (user + system) of the replay processes per request
    lateness_ms: list[float] = field(default_factory=list)  # shadow side, see `replay`
    scheduler: tuple[float, float] | None = None  # the replayer's own lateness p50, p99 (ms)
    summary: str = ""
    code: int = 0


def wrk(port: int, connections: int, duration: float, cpus: set[int] | None) -> float:
    return run_wrk(f"http://127.0.0.1:{port}{WRK_PATH}", connections, duration, cpus).rps


def replay_argv(
    bootstrap: str,
    topic: str,
    target: str,
    partitions: Sequence[int],
    end_offset: str,
    concurrency: int,
    extra: Sequence[str],
) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "trafficmirror",
        "-q",
        "replay",
        "range",
        "-b",
        bootstrap,
        "-t",
        topic,
        "--target",
        target,
        "--start-offset",
        "0",
        "--end-offset",
        end_offset,
        "--concurrency",
        str(concurrency),
        "--run-id",
        "bench",
    ]
    for part in partitions:
        argv += ["-p", str(part)]
    return argv + list(extra)


def replay(
    argvs: list[list[str]],
    shadow_port: int,
    cpus: set[int] | None,
    log: Path,
    recorded_us: dict[str, int] | None = None,
) -> Run:
    """Run the replay processes at once; measure at the shadow.

    With `recorded_us` (exchange id -> recorded time), lateness at the shadow:
    each arrival minus its recorded offset, relative to the least late one.
    The shadow cannot know when the replay's clock started, so this shows the
    spread of lateness (jitter and drift), not a constant delay; the replayer's
    own figure (sent minus due, from its summary) is kept beside it.
    """
    fetch_arrivals(shadow_port)  # forget anything earlier
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    procs = [start(a, cpus, log, stdout=subprocess.PIPE) for a in argvs]
    summaries = []
    scheduler = None
    code = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        text = out.decode(errors="replace")
        with open(log, "a") as f:
            f.write(text)
        first = next((ln for ln in text.splitlines() if ln.startswith("replayed")), "")
        summaries.append(re.sub(r"^replayed topic \S+ to \S+ ", "", first))
        late = re.search(r"lateness: p50 ([\d.]+)ms, p99 ([\d.]+)ms", text)
        if late:
            scheduler = (float(late[1]), float(late[2]))
        code = code or proc.returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    arrivals = fetch_arrivals(shadow_port)
    arrivals.sort()
    count = len(arrivals)
    span = arrivals[-1][0] - arrivals[0][0] if count > 1 else 0.0
    rps = (count - 1) / span if span > 0 else 0.0
    run = Run(
        count,
        rps,
        cpu_us=cpu / count * 1e6 if count else 0.0,
        scheduler=scheduler,
        summary="; ".join(summaries),
        code=code,
    )
    if recorded_us is not None and count:
        behind = [t - recorded_us[i] / 1e6 for t, i in arrivals]
        least = min(behind)
        run.lateness_ms = [(b - least) * 1000 for b in behind]
    return run


def supports(option: str) -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "trafficmirror", "replay", "range", "--help"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return option in out
