"""Recorder benchmark: what recording costs, measured in one run.

Puts each proxy in front of the same sample app (`python -m
trafficmirror.demo.apps app`), recording to the same in-memory broker
(`trafficmirror dev-kafka`), under the same load (wrk, or a small asyncio
client when wrk is missing): plain `mitmdump --mode reverse:APP`, `mitmdump -s
recorder/addon.py`, `trafficmirror record`, and with --configs the rows of
bench/scripts/floor_addon.py that show where the addon's cost lies. Prints
req/s, p50/p99 and the proxy's CPU time per request (all its threads), the
medians of interleaved repeats with ratios against plain mitmdump (targets:
addon >= 0.95x plain, record >= 1.8x plain); then all the proxies side by side
on one core, whose CPU ratio holds still where runs one after the other drift.
--instructions counts instructions per request under valgrind's callgrind
instead, steady whatever else runs. docs/ has the method and the figures.

    python bench/recorder.py [--duration 10] [--connections 16] [--repeats 3]
    python bench/recorder.py --configs plain,script,floor-bare,floor,addon --side-by-side-only
    python bench/recorder.py --instructions [--requests 300]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from procs import free_port, start, stop, wait_port
from recording.instructions import instruction_run
from recording.load import PATH, cpu_seconds, pyload, pyload_main, wrk
from recording.proxies import CONFIGS, MITMDUMP, TOPIC, Config, start_backends
from recording.report import report
from recording.together import side_by_side


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per configuration")
    parser.add_argument(
        "--configs",
        default="plain,addon,record",
        help=f"comma-separated, of: {', '.join(CONFIGS)}",
    )
    parser.add_argument("--python-load", action="store_true", help="use the Python load generator")
    parser.add_argument(
        "--no-side-by-side",
        dest="side_by_side",
        action="store_false",
        help="skip the side-by-side runs (all proxies on one core at once; needs wrk, 2+ cores)",
    )
    parser.add_argument(
        "--side-by-side-only",
        action="store_true",
        help="skip the runs one at a time (needs wrk, 2+ cores)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="instead of timing, count the instructions per request under valgrind's callgrind",
    )
    parser.add_argument(
        "--requests", type=int, default=300, help="--instructions: requests counted"
    )
    parser.add_argument(
        "--warmup-requests", type=int, default=200, help="--instructions: requests before counting"
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    for name in names:
        if name not in CONFIGS:
            parser.error(f"unknown configuration {name!r}")
    if MITMDUMP is None:
        print("mitmdump not found next to this Python nor on PATH", file=sys.stderr)
        return 2
    if args.instructions:
        return instruction_run(args, names)

    use_wrk = not args.python_load and shutil.which("wrk") is not None
    if not use_wrk and not args.python_load:
        print(
            "NOTE: wrk is not installed (Debian: apt-get install wrk); "
            "falling back to the Python load generator, which is slower and less precise.",
            flush=True,
        )
    load = wrk if use_wrk else pyload
    if args.side_by_side_only and (not use_wrk or (os.cpu_count() or 1) < 2):
        print("--side-by-side-only needs wrk and at least 2 cores", file=sys.stderr)
        return 2
    # The proxy gets a core to itself, all its threads (so it pays for its own
    # background work); app, broker and load share the rest. The proxy is the
    # bottleneck by far, which the app-alone run below checks.
    ncpu = os.cpu_count() or 1
    proxy_cpus = {0} if ncpu >= 2 else None
    rest_cpus = set(range(1, ncpu)) if ncpu >= 2 else None

    logdir = Path(tempfile.mkdtemp(prefix="tm-bench-"))
    try:
        procs, bootstrap, app_url = start_backends(rest_cpus, logdir)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        app_port = int(app_url.rsplit(":", 1)[1])

        print(
            f"load: {'wrk' if use_wrk else 'python asyncio client'}, {args.connections} "
            f"keep-alive connections, {args.duration:g}s per run after {args.warmup:g}s "
            f"warm-up, {args.repeats} interleaved repeats, GET {PATH}",
            flush=True,
        )
        print(
            f"cpus: {ncpu}; proxy pinned to {sorted(proxy_cpus or [])}, app/broker/load to "
            f"{sorted(rest_cpus or [])}; logs in {logdir}",
            flush=True,
        )
        load(app_port, args.connections, 1.0, rest_cpus)
        direct = load(app_port, args.connections, args.duration, rest_cpus)
        print(f"app alone (no proxy): {direct.rps:.0f} req/s", flush=True)

        configs = [Config(n, CONFIGS[n]) for n in names]
        for rep in range(0 if args.side_by_side_only else args.repeats):
            for config in configs:
                port = free_port()
                log = logdir / f"{config.name}-{rep}.log"
                proc = start(config.argv(app_url, port, bootstrap, TOPIC), proxy_cpus, log)
                procs.append(proc)
                wait_port(port)
                load(port, args.connections, args.warmup, rest_cpus)
                cpu_before = cpu_seconds(proc.pid)
                result = load(port, args.connections, args.duration, rest_cpus)
                cpu = cpu_seconds(proc.pid) - cpu_before
                result.cpu_us = cpu / max(result.requests, 1) * 1e6
                stop(proc)
                procs.remove(proc)
                config.results.append(result)
                text = log.read_text(errors="replace")
                summary = re.findall(r"summary: (recorded=\d+ dropped=\d+ failed=\w+)", text)
                config.summaries.append(summary[-1] if summary else "")
                print(
                    f"  run {rep + 1} {config.name:8} {result.rps:8.0f} req/s  "
                    f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
                    f"proxy cpu {result.cpu_us:5.0f} us/req"
                    + (f"  [{summary[-1]}]" if summary else ""),
                    flush=True,
                )
        if not args.side_by_side_only:
            report(configs, direct)
        if (args.side_by_side or args.side_by_side_only) and use_wrk and proxy_cpus:
            print()
            print(
                f"side by side: all {len(configs)} proxies at once on core(s) "
                f"{sorted(proxy_cpus)}, each under its own wrk, {args.repeats} repeats",
                flush=True,
            )
            side_by_side(
                configs, app_url, bootstrap, TOPIC, args, (proxy_cpus, rest_cpus), logdir, procs
            )
    finally:
        for proc in procs:
            stop(proc)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--_pyload":
        pyload_main(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    else:
        sys.exit(main())
