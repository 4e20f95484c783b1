"""The live-path benchmark's figures and markdown tables (pure: no processes, no clock).

`Cell` gathers what one row measured at one load over all rounds (latencies
pooled, the proxy's CPU time and requests, the generator's own lateness);
`steady_table` and `download_table` print them, and `verdicts` checks the
issue's targets. Percentiles are nearest-rank on the pooled samples.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile `q` (0-100) of already sorted values; nan when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Cell:
    """One row at one load, over every round."""

    latencies_us: list[float] = field(default_factory=list)
    late_us: list[float] = field(default_factory=list)
    round_p50_us: list[float] = field(default_factory=list)
    errors: int = 0
    reconnects: int = 0
    cpu_s: float = 0.0
    requests: int = 0
    #: CPU seconds by kind of thread (`procinfo.thread_cpu`).
    threads: dict[str, float] = field(default_factory=dict)

    def add(self, run: dict[str, Any], threads: dict[str, float]) -> None:
        lat = sorted(run["latencies_us"])
        self.latencies_us.extend(lat)
        self.late_us.extend(run["late_us"])
        self.round_p50_us.append(percentile(lat, 50))
        self.errors += run["errors"]
        self.reconnects += run["reconnects"]
        self.cpu_s += sum(threads.values())
        for kind, seconds in threads.items():
            self.threads[kind] = self.threads.get(kind, 0.0) + seconds
        self.requests += len(lat)

    def ms(self, q: float) -> float:
        return percentile(sorted(self.latencies_us), q) / 1000

    def late_ms(self, q: float) -> float:
        return percentile(sorted(self.late_us), q) / 1000

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.requests * 1e6 if self.requests else math.nan


@dataclass
class Download:
    """One download test of one row: `count` bodies at once, repeated; per repeat the
    slowest body's time to first byte and total time."""

    count: int
    ttfb_s: list[float]
    total_s: list[float]
    ok: bool
    idle_mb: float
    peak_mb: float
    error: str = ""


@dataclass
class Saturated:
    """One row driven as fast as it answers, per round: req/s, wrk's p50/p99, CPU per request."""

    rps: list[float]
    p50_ms: list[float]
    p99_ms: list[float]
    cpu_us: list[float]
    errors: int = 0


def _f(value: float, digits: int = 2) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _plus(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.2f}"


def steady_table(
    load: str,
    rows: list[tuple[str, str, Cell]],
    baseline: Cell | None,
    rss: dict[str, float],
) -> list[str]:
    """Markdown rows for one load: (name, label, cell) per row; added latency over `baseline`."""
    lines = [
        f"| {load} | p50 ms | p90 ms | p99 ms | added p50 | added p99 "
        "| p50 per round | proxy CPU µs/req | peak RSS MB | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, label, cell in rows:
        p50, p90, p99 = cell.ms(50), cell.ms(90), cell.ms(99)
        if baseline is not None and cell is not baseline:
            added = (_plus(p50 - baseline.ms(50)), _plus(p99 - baseline.ms(99)))
        else:
            added = ("", "")
        rounds = "/".join(f"{x / 1000:.2f}" for x in cell.round_p50_us)
        cpu = "" if name == "direct" else _f(cell.cpu_us, 0)
        mem = _f(rss[name], 0) if name in rss else ""
        lines.append(
            f"| {label} | {_f(p50)} | {_f(p90)} | {_f(p99)} | {added[0]} | {added[1]} "
            f"| {rounds} | {cpu} | {mem} | {cell.errors + cell.reconnects} |"
        )
    return lines


def threads_table(load: str, rows: list[tuple[str, str, Cell]]) -> list[str]:
    """Markdown rows: each proxy's CPU per request by kind of thread, at one load."""
    kinds = ["main", "other threads", "librdkafka"]
    lines = [
        f"| {load}: proxy CPU µs/req | main thread(s) | other Python threads "
        "| librdkafka threads | total |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for _, label, cell in rows:
        if not cell.threads or not cell.requests:
            continue
        per = [cell.threads.get(k, 0.0) / cell.requests * 1e6 for k in kinds]
        lines.append(
            f"| {label} | " + " | ".join(f"{x:.0f}" for x in per) + f" | {cell.cpu_us:.0f} |"
        )
    return lines


def download_table(rows: list[tuple[str, str, list[Download]]], size_mb: int) -> list[str]:
    """Markdown rows of the download tests: per row, one body alone and several at once."""
    lines = [
        f"| {size_mb} MB download | bodies at once | time to first byte ms | total s "
        "| idle RSS MB | peak RSS above idle MB | intact |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, label, downloads in rows:
        for d in downloads:
            ttfb, total = median(d.ttfb_s) * 1000, median(d.total_s)
            idle = "" if name == "direct" else _f(d.idle_mb, 0)
            above = "" if name == "direct" else _f(d.peak_mb - d.idle_mb, 0)
            ok = "yes" if d.ok else f"NO {d.error}".strip()
            lines.append(
                f"| {label} | {d.count} | {_f(ttfb, 1)} | {_f(total, 2)} "
                f"| {idle} | {above} | {ok} |"
            )
    return lines


def verdicts(
    cells: dict[tuple[str, str], Cell], downloads: dict[str, list[Download]], size_mb: int = 200
) -> list[str]:
    """The issue's targets, each met / NOT met / not measured, with the figure."""
    out: list[str] = []

    def added(name: str, base: str, load: str, q: float) -> float:
        a, b = cells.get((name, load)), cells.get((base, load))
        return a.ms(q) - b.ms(q) if a and b else math.nan

    def line(text: str, value: float, limit: float, unit: str = "ms") -> None:
        if math.isnan(value) or math.isnan(limit):
            bound = "" if math.isnan(limit) else f" ≤ {limit:.3g} {unit}"
            out.append(f"- {text}{bound}: not measured")
        else:
            verdict = "met" if value <= limit else "NOT met"
            out.append(f"- {text} ≤ {limit:.3g} {unit}: {value:.2f} {unit}, **{verdict}**")

    line("`record` added p50 at 1×50", added("record", "direct", "1x50", 50), 1.0)
    line("`record` added p99 at 1×50", added("record", "direct", "1x50", 99), 2.0)
    one, two = added("record", "direct", "8x50", 50), added("record-w2", "direct", "8x50", 50)
    line("`record --workers 2` added p50 at 8×50 (half of `record`'s)", two, one / 2)
    for load in ("1x50", "8x50"):
        line(
            f"nginx → `record --mirror` added p50 over nginx alone at {load}",
            added("mirror", "nginx", load, 50),
            0.3,
        )
    direct = downloads.get("direct", [])
    for name in ("record", "record-w2"):
        for d in downloads.get(name, []):
            line(
                f"`{name}` RSS above idle, {d.count} × {size_mb} MB",
                d.peak_mb - d.idle_mb,
                64,
                "MB",
            )
            ref = next((x for x in direct if x.count == d.count), None)
            if ref and d.ttfb_s and ref.ttfb_s:
                gap = (median(d.ttfb_s) - median(ref.ttfb_s)) * 1000
                line(f"`{name}` time to first byte over direct, {d.count} × {size_mb} MB", gap, 5.0)
    return out


def saturation_table(connections: int, rows: list[tuple[str, str, Saturated]]) -> list[str]:
    """Markdown rows of the saturation runs: (name, label, `runs.Saturated`) per row."""
    lines = [
        f"| as fast as it answers, wrk {connections} connections | req/s (median) "
        "| p50 ms | p99 ms | proxy CPU µs/req | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, label, sat in rows:
        cpu = "" if name == "direct" else _f(median(sat.cpu_us), 0)
        lines.append(
            f"| {label} | {median(sat.rps):.0f} | {_f(median(sat.p50_ms))} "
            f"| {_f(median(sat.p99_ms))} | {cpu} | {sat.errors} |"
        )
    return lines


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan
