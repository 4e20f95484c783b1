"""The table of bench/replay.py: medians with their spread, CPU per request, targets."""

from __future__ import annotations

import argparse
import statistics

from replaying.runs import Run


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    low, mid, high = (fmt.format(v) for v in (min(values), statistics.median(values), max(values)))
    return f"{mid} ({low}..{high})"


def report(ceiling: list[float], runs: dict[str, list[Run]], args: argparse.Namespace) -> None:
    print()
    print("| measurement | median (min..max) | CPU per request | target | verdict |")
    print("| --- | ---: | ---: | --- | --- |")
    top = statistics.median(ceiling) if ceiling else None
    if ceiling:
        print(
            f"| wrk -c{args.concurrency} against the shadow (the ceiling) | {spread(ceiling)} "
            "req/s | | | |"
        )

    def cpu(name: str) -> str:
        return f"{statistics.median(r.cpu_us for r in runs[name]):.0f} us"

    labels = {
        "max1": "replay range --speed max, 1 process",
        "nores": "the same with --no-results (compared, not written)",
        "floor": "the least a Python replay does: consume, decode, build, send (no compare, "
        "results, offsets, metrics)",
        "max2": "replay range --speed max, 2 processes (partitions 0-1, 2-3)",
        "amp3": "replay range --speed max --amplify 3, 1 process (requests: records and copies)",
    }
    for name, label in labels.items():
        if not runs.get(name):
            continue
        values = [r.rps for r in runs[name]]
        med = statistics.median(values)
        ratio = f", {med / top:.2f}x wrk" if top else ""
        target = verdict = ""
        if name == "max1":
            target = ">= 5000 and >= 0.5x wrk"
            verdict = "met" if med >= 5000 and (top is None or med >= 0.5 * top) else "NOT met"
        print(f"| {label} | {spread(values)} req/s{ratio} | {cpu(name)} | {target} | {verdict} |")
    if runs.get("max1") and runs.get("h2"):
        http1 = statistics.median(r.rps for r in runs["max1"])
        values = [r.rps for r in runs["h2"]]
        ratio = statistics.median(values) / http1 if http1 else 0.0
        print(
            f"| HTTP/2 replay: the same records recorded as HTTP/2, h2c to the same shadow, "
            f"--speed max, 1 process | {spread(values)} req/s, {ratio:.2f}x the HTTP/1.1 row | "
            f"{cpu('h2')} | >= 0.7x | {'met' if ratio >= 0.7 else 'NOT met'} |"
        )
    if runs.get("plain") and runs.get("transforms"):
        plain = statistics.median(r.rps for r in runs["plain"])
        values = [r.rps for r in runs["transforms"]]
        ratio = statistics.median(values) / plain if plain else 0.0
        # Round by round (each transforms run against the plain run before it): one
        # run's ratio moves by several hundredths with nothing changed (docs/benchmarks.md).
        rounds = [
            t.rps / p.rps for p, t in zip(runs["plain"], runs["transforms"], strict=True) if p.rps
        ]
        each = f"; rounds {min(rounds):.2f}..{max(rounds):.2f}" if len(rounds) > 1 else ""
        print(
            f"| authenticated traffic, --speed max, no transforms | "
            f"{spread([r.rps for r in runs['plain']])} req/s | {cpu('plain')} | | |"
        )
        print(
            f"| the same with --transforms: 5 rewrite rules, 1 correlation rule, JWT re-sign | "
            f"{spread(values)} req/s, {ratio:.2f}x{each} | {cpu('transforms')} | >= 0.85x | "
            f"{'met' if ratio >= 0.85 else 'NOT met'} |"
        )
    for rate in (100, 1000):
        name = f"rate{rate}"
        if not runs.get(name):
            continue
        errors = [(r.rps / rate - 1) * 100 for r in runs[name]]
        ok = abs(statistics.median(errors)) <= 1
        print(
            f"| --rate {rate}: achieved | {spread([r.rps for r in runs[name]], '{:.1f}')} req/s "
            f"({spread(errors, '{:+.2f}')} %) | | within 1 % | "
            f"{'met' if ok else 'NOT met'} |"
        )
    if runs.get("speed1"):
        timed = runs["speed1"]
        own = [r.scheduler for r in timed if r.scheduler is not None]
        if own:
            p50 = [o[0] for o in own]
            p99 = [o[1] for o in own]
            print(
                f"| --speed 1 at 500/s: lateness p50 / p99, the replayer's own (sent - due) | "
                f"{spread(p50, '{:.1f}')} / {spread(p99, '{:.1f}')} ms | | "
                f"p99 <= 5 ms | {'met' if statistics.median(p99) <= 5 else 'NOT met'} |"
            )
        p50 = [pct(r.lateness_ms, 0.5) for r in timed]
        p99 = [pct(r.lateness_ms, 0.99) for r in timed]
        print(
            f"| --speed 1 at 500/s: lateness p50 / p99 at the shadow, vs the least late | "
            f"{spread(p50, '{:.2f}')} / {spread(p99, '{:.2f}')} ms | | p99 <= 5 ms | "
            f"{'met' if statistics.median(p99) <= 5 else 'NOT met'} |"
        )
