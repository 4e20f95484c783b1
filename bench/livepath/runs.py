"""The live-path benchmark's measurements: steady load in rounds, then the big downloads.

Steady: in each round, each load level, each row in turn (the order rotating
from round to round, so a drift of the shared machine hits every row alike)
gets its own load-generator process for a warm-up and a measured window. The
row's CPU time (its whole process tree) is read around the window. Downloads
come last, once per row: the peak RSS is reset first (`procinfo.reset_peak`),
so the figure is what the download itself made the proxy hold.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from procs import run_wrk

from livepath import procinfo, profile
from livepath.loadgen import MARK
from livepath.nginx import BIG_PATH
from livepath.report import Cell, Download, Saturated
from livepath.targets import Target

LOADGEN = Path(__file__).resolve().parent / "loadgen.py"


@dataclass(frozen=True)
class Load:
    """A fixed offered load: `connections` keep-alive connections × `rate` req/s each."""

    connections: int
    rate: float

    @property
    def key(self) -> str:
        return f"{self.connections}x{self.rate:g}"

    @property
    def title(self) -> str:
        return f"{self.connections} × {self.rate:g} req/s"


def parse_load(text: str) -> Load:
    """`CONNECTIONSxRATE`, e.g. `8x50`; ValueError with a one-line reason otherwise."""
    conns, sep, rate = text.lower().partition("x")
    try:
        load = Load(int(conns), float(rate))
    except ValueError:
        raise ValueError(f"load {text!r} is not CONNECTIONSxRATE, such as 8x50") from None
    if not sep or load.connections < 1 or load.rate <= 0:
        raise ValueError(f"load {text!r} is not CONNECTIONSxRATE, such as 8x50")
    return load


def _steady(
    port: int,
    load: Load,
    seconds: float,
    warmup: float,
    pids: list[int],
    sample: Callable[[], subprocess.Popen[bytes]] | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """One load-generator run against `port`: its figures, and `pids`' CPU time while
    measured, by kind of thread (`procinfo.thread_cpu`); `sample` starts a sampler
    when the measured window starts (it is waited for at the end)."""
    args = ["steady", port, load.connections, load.rate, seconds, warmup]
    proc = subprocess.Popen(
        [sys.executable, str(LOADGEN), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    before = procinfo.thread_cpu(pids)
    sampler = sample() if sample is not None and first == MARK else None
    out, err = proc.communicate()
    after = procinfo.thread_cpu(pids)
    if sampler is not None:
        sampler.wait()
    if proc.returncode != 0 or first != MARK:
        raise RuntimeError(f"load generator failed: {(first + err).strip()[-500:]}")
    return json.loads(out), {k: v - before.get(k, 0.0) for k, v in after.items()}


def _loadgen(*args: object) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(LOADGEN), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def steady_rounds(
    targets: list[Target],
    loads: list[Load],
    rounds: int,
    seconds: float,
    warmup: float,
    spy_dir: Path | None = None,
) -> dict[tuple[str, str], Cell]:
    """Every running row at every load, `rounds` times, rotating the order; cells by (row, load).

    With `spy_dir`, py-spy samples each Python row's measured windows into
    `spy_dir/ROW@LOAD-rROUND.txt` (`livepath.profile`)."""
    live = [t for t in targets if t.skipped is None]
    cells = {(t.name, load.key): Cell() for t in live for load in loads}
    for rnd in range(rounds):
        for load in loads:
            shift = rnd % len(live)
            order = live[shift:] + live[:shift]
            parts = []
            for target in order:
                pids = tree_pids(target)
                sample = None
                if spy_dir is not None and target.python:
                    out = spy_dir / f"{target.name}@{load.key}-r{rnd + 1}.txt"
                    pid = target.procs[0].pid
                    sample = partial(profile.start, pid, seconds, out)
                run, cpu = _steady(target.port, load, seconds, warmup, pids, sample)
                cells[(target.name, load.key)].add(run, cpu)
                lat = sorted(run["latencies_us"])
                p50 = lat[len(lat) // 2] / 1000 if lat else float("nan")
                p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000 if lat else float("nan")
                parts.append(f"{target.name} {p50:.2f}/{p99:.2f}")
            print(f"  round {rnd + 1} {load.key:>5}: p50/p99 ms  " + "  ".join(parts), flush=True)
    return cells


def tree_pids(target: Target) -> list[int]:
    pids: list[int] = []
    for proc in target.procs:
        pids += procinfo.tree(proc.pid)
    return pids


def warm_up_download(port: int) -> None:
    """Fetch the big file once from the app, so no row's first download reads it cold."""
    _loadgen("download", port, 1, BIG_PATH)


def downloads(target: Target, counts: list[int], repeats: int) -> list[Download]:
    """For each count, that many big downloads at once through `target`, `repeats` times.

    Per repeat, the slowest body's time to first byte and total time; the peak
    RSS over all repeats (reset before the first) against the RSS just before.
    """
    results = []
    for count in counts:
        pids = tree_pids(target)
        procinfo.reset_peak(pids)
        idle = procinfo.rss_mb(pids)
        ttfb: list[float] = []
        total: list[float] = []
        error = ""
        for _ in range(repeats):
            try:
                items = _loadgen("download", target.port, count, BIG_PATH)["downloads"]
            except RuntimeError as exc:
                error = str(exc)
                break
            if not all(d.get("ok") for d in items):
                error = next((d.get("error", "") for d in items if d.get("error")), "")
                error = error or "short or not 200"
                break
            ttfb.append(max(d["ttfb_s"] for d in items))
            total.append(max(d["total_s"] for d in items))
        peak = procinfo.peak_mb(tree_pids(target))
        results.append(Download(count, ttfb, total, not error, idle, peak, error))
        print(
            f"  download {target.name} x{count}: ttfb "
            + "/".join(f"{x * 1000:.1f}" for x in ttfb)
            + f" ms, rss {idle:.0f} -> {peak:.0f} MB, {'ok' if not error else 'FAILED ' + error}",
            flush=True,
        )
    return results


def saturation(
    targets: list[Target], rounds: int, seconds: float, connections: int
) -> dict[str, Saturated]:
    """wrk with `connections` keep-alive connections on each row in turn, `rounds` times."""
    live = [t for t in targets if t.skipped is None]
    out = {t.name: Saturated([], [], [], []) for t in live}
    for rnd in range(rounds):
        shift = rnd % len(live)
        parts = []
        for target in live[shift:] + live[:shift]:
            pids = tree_pids(target)
            before = procinfo.cpu_seconds(pids)
            run = run_wrk(f"http://127.0.0.1:{target.port}/hello", connections, seconds, None)
            cpu = procinfo.cpu_seconds(pids) - before
            row = out[target.name]
            row.rps.append(run.rps)
            row.p50_ms.append(run.p50_ms)
            row.p99_ms.append(run.p99_ms)
            row.cpu_us.append(cpu / max(run.requests, 1) * 1e6)
            row.errors += run.errors
            parts.append(f"{target.name} {run.rps:.0f}/s")
        print(f"  round {rnd + 1} saturated: " + "  ".join(parts), flush=True)
    return out
