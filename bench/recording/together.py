"""The side-by-side runs: all proxies at once on the proxy core, each under its own wrk.

They see the machine at the same moment, so the ratio of their CPU time per
request holds still where runs one after the other drift (`side_by_side`
says more).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
from pathlib import Path

from procs import free_port, start, stop, wait_port

from recording.load import cpu_seconds, load_together
from recording.proxies import Config
from recording.report import ratio


def side_by_side(
    configs: list[Config],
    app_url: str,
    bootstrap: str,
    topic: str,
    args: argparse.Namespace,
    cpus: tuple[set[int] | None, set[int] | None],
    logdir: Path,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    """All proxies at once on the proxy core, each under its own load: CPU per request.

    Runs one after the other see the machine at different moments, and on a
    shared VM its speed drifts by more than the addon costs. Proxies that share
    one core at the same moment see the same machine, so the ratio of their
    CPU time per request (all threads of each process) is what one costs
    against the other, whatever the load around them: it is the ratio of
    their throughputs on a saturated core. (Their req/s here are not: the
    scheduler shares the core by thread, not by process.)
    """
    proxy_cpus, rest_cpus = cpus
    rows: dict[str, list[float]] = {c.name: [] for c in configs}
    for rep in range(args.repeats):
        running: list[tuple[Config, subprocess.Popen[bytes], int]] = []
        for config in configs:
            port = free_port()
            log = logdir / f"together-{config.name}-{rep}.log"
            proc = start(config.argv(app_url, port, bootstrap, topic), proxy_cpus, log)
            procs.append(proc)
            running.append((config, proc, port))
        for _, _, port in running:
            wait_port(port)
        ports = {c.name: port for c, _, port in running}
        load_together(ports, args.connections, args.warmup, rest_cpus)
        before = {c.name: cpu_seconds(proc.pid) for c, proc, _ in running}
        results = load_together(ports, args.connections, args.duration, rest_cpus)
        line = []
        for config, proc, _ in running:
            result = results[config.name]
            cpu_us = (cpu_seconds(proc.pid) - before[config.name]) / max(result.requests, 1) * 1e6
            rows[config.name].append(cpu_us)
            line.append(f"{config.name} {result.rps:5.0f} req/s {cpu_us:5.0f} us/req")
            stop(proc)
            procs.remove(proc)
        print(f"  together {rep + 1}: " + " | ".join(line), flush=True)
    base = rows.get("plain")
    capacity: dict[str, float] = {}
    print()
    print("| side by side on one core | proxy CPU µs/req (median) | capacity vs plain mitmdump |")
    print("| --- | ---: | ---: |")
    for config in configs:
        cpu = rows[config.name]
        ratios = sorted(b / c for b, c in zip(base, cpu, strict=True)) if base else []
        spread = f" ({ratios[0]:.2f}..{ratios[-1]:.2f})" if ratios else ""
        print(
            f"| {config.describe} | {statistics.median(cpu):.0f} "
            f"| {ratio(statistics.median(ratios) if ratios else None)}{spread} |"
        )
        if ratios:
            capacity[config.name] = statistics.median(ratios)
    for name, target in (("addon", 0.95), ("record", 1.8)):
        if name in capacity:
            verdict = "met" if capacity[name] >= target else "NOT met"
            print(
                f"target {name} >= {target}x plain, side by side: {capacity[name]:.2f}x, {verdict}"
            )
    if "floor-bare" in capacity:
        print(
            f"floor: fixed bytes on a bare confluent-kafka producer, side by side: "
            f"{capacity['floor-bare']:.2f}x (any recorder that also builds events costs more)"
        )
