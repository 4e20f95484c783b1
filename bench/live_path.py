"""Live-path benchmark: what each proxy adds to a request, side by side in one run.

At fixed offered loads (default 1 connection × 50 req/s and 8 × 50 req/s, each
connection on its own evenly spread schedule, keep-alive, open loop: latency
from the scheduled send time, so a stall shows) the same client asks the same
app directly, through Debian's nginx as a reverse proxy (the anchor: what a
production proxy costs here), through plain mitmdump (reverse mode), through
`trafficmirror record` (to the librdkafka mock cluster of `trafficmirror
dev-kafka`), through `record --workers 2`, and through nginx mirroring every
request to `record --mirror` (compared with nginx alone, and with nginx
mirroring to a stub that answers at once: what the `mirror` rule costs by
itself, apart from the CPU its target takes). Rows whose option this checkout
lacks are skipped with a note. All rows run for the whole run
and take turns in rounds, the order rotating, so a drift of the shared machine
hits them alike. Then one 200 MB download and four at once through each:
time to first byte, and the proxy's peak RSS above idle (VmHWM of its
processes, children included, reset before each download).

The app is nginx serving a small fixed JSON answer (and a sparse 200 MB file
for the downloads): C, one worker, no garbage collector and no Python, so it
answers in tens of microseconds and its tail is flat; every millisecond above
the direct row is the proxy's. The load generator is a process of its own per
measurement (one thread per connection, blocking sockets, pre-built requests,
`perf_counter_ns`, timer slack 1 ns): the direct row is its cost plus the
app's, and the line under the table says how late it sent the requests it was
free to send on time. Prints markdown tables for docs/benchmarks.md.

    python bench/live_path.py                # the full run (about 20 minutes)
    python bench/live_path.py --quick        # a short one (a few minutes)
    python bench/live_path.py --rows direct,nginx,record --loads 1x50 --downloads ''
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from livepath import procinfo
from livepath.instructions import DEFAULT_ROWS, instruction_rows
from livepath.nginx import NGINX, app_config, start_nginx
from livepath.profile import available as profile_available
from livepath.profile import breakdown
from livepath.profile import table as profile_table
from livepath.report import (
    Cell,
    Download,
    Saturated,
    download_table,
    saturation_table,
    steady_table,
    threads_table,
    verdicts,
)
from livepath.runs import (
    Load,
    downloads,
    parse_load,
    saturation,
    steady_rounds,
    tree_pids,
    warm_up_download,
)
from livepath.targets import (
    CATALOGUE,
    ROOT,
    Env,
    Target,
    check_row,
    record_help,
    start_targets,
    stop_targets,
)
from procs import free_port, start_broker, stop


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--loads",
        default="1x50,8x50",
        help="comma-separated offered loads, CONNECTIONSxRATE (req/s per connection); "
        "default: %(default)s",
    )
    parser.add_argument(
        "--rows",
        help=f"comma-separated rows, of: {','.join(CATALOGUE)} (the default: all), and variants of "
        "record for measuring a change before making it, record:VARIANT[+VARIANT] "
        "(see bench/livepath/variant.py: nohook, nosend, defer, uvloop, gc, timing)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="rounds of every row at every load, the order rotating (default: %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="measured seconds per row, load and round (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds of load before each measured window (default: %(default)s)",
    )
    parser.add_argument(
        "--downloads",
        default="1,4",
        help="bodies at once in the download tests, comma-separated ('' skips them); "
        "default: %(default)s",
    )
    parser.add_argument(
        "--saturate",
        type=float,
        default=5.0,
        help="seconds per row and round of wrk as fast as each row answers (0 skips; "
        "default: %(default)s)",
    )
    parser.add_argument(
        "--saturate-connections",
        type=int,
        default=8,
        help="wrk's keep-alive connections in the saturation runs (default: %(default)s)",
    )
    parser.add_argument(
        "--download-mb", type=int, default=200, help="size of each download, MB (default: 200)"
    )
    parser.add_argument(
        "--download-repeats",
        type=int,
        default=3,
        help="runs of each download test; the tables give the median (default: %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run: 1 round of 3 s after 1 s of warm-up, 2 s saturated (downloads as given)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="instead of timing, count each row's instructions per request under valgrind's "
        f"callgrind (default rows: {DEFAULT_ROWS})",
    )
    parser.add_argument(
        "--requests", type=int, default=300, help="--instructions: requests counted (default: 300)"
    )
    parser.add_argument(
        "--warmup-requests",
        type=int,
        default=200,
        help="--instructions: requests before counting (default: 200)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="sample each Python row while it is measured with py-spy (pip install py-spy) "
        "into DIR, and print where its time goes",
    )
    parser.add_argument("--logs", type=Path, help="folder for the processes' logs (default: temp)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    for name in ("logs", "json", "py_spy"):  # before main() changes the working directory
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).resolve())
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 3.0, 1.0
        args.saturate = min(args.saturate, 2.0)
        args.download_repeats = 1
    try:
        args.load_list = [parse_load(x.strip()) for x in args.loads.split(",") if x.strip()]
        args.counts = [int(x) for x in args.downloads.split(",") if x.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    if args.rows is None:
        args.rows = DEFAULT_ROWS if args.instructions else ",".join(CATALOGUE)
    args.row_list = [x.strip() for x in args.rows.split(",") if x.strip()]
    for row in args.row_list:
        problem = check_row(row)
        if problem:
            parser.error(problem)
    if not args.load_list:
        parser.error("--loads is empty")
    if args.py_spy is not None and not profile_available():
        parser.error("--py-spy needs py-spy on PATH (pip install py-spy)")
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0 or args.download_repeats < 1:
        parser.error(
            "--rounds and --download-repeats must be 1 or more, --duration above 0, "
            "--warmup 0 or more"
        )
    return args


def _describe_machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model or platform.machine()}), Linux {platform.release()}"


def _commit() -> str:
    def git(*a: str) -> str:
        out = subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True)
        return out.stdout.strip()

    dirty = " (with uncommitted changes)" if git("status", "--porcelain") else ""
    return f"{git('rev-parse', '--abbrev-ref', 'HEAD')} {git('log', '-1', '--format=%h %s')}{dirty}"


@dataclass
class Results:
    """Everything one run measured."""

    live: list[Target]
    skipped: list[Target]
    cells: dict[tuple[str, str], Cell]
    rss: dict[str, float] = field(default_factory=dict)
    sat: dict[str, Saturated] = field(default_factory=dict)
    got: dict[str, list[Download]] = field(default_factory=dict)


def _measure(args: argparse.Namespace, env: Env) -> Results:
    """Start the rows, measure them (steady, saturated, downloads), stop them."""
    targets = start_targets(env, args.row_list)
    try:
        for t in targets:
            if t.skipped:
                print(f"  skipped {t.name}: {t.skipped}", flush=True)
        live = [t for t in targets if t.skipped is None]
        print(
            f"rows: {', '.join(t.name for t in live)}; loads: "
            f"{', '.join(x.title for x in args.load_list)}; {args.rounds} round(s) of "
            f"{args.duration:g} s after {args.warmup:g} s warm-up",
            flush=True,
        )
        for t in live:
            procinfo.reset_peak(tree_pids(t))
        if args.py_spy is not None:
            args.py_spy.mkdir(parents=True, exist_ok=True)
        cells = steady_rounds(
            live, args.load_list, args.rounds, args.duration, args.warmup, args.py_spy
        )
        results = Results(live, [t for t in targets if t.skipped], cells)
        # Peak RSS of the steady runs, before the downloads raise it.
        results.rss = {t.name: procinfo.peak_mb(tree_pids(t)) for t in live if t.procs}
        if args.saturate > 0 and shutil.which("wrk"):
            results.sat = saturation(live, args.rounds, args.saturate, args.saturate_connections)
        elif args.saturate > 0:
            print("  no wrk: saturation runs skipped (Debian: apt-get install wrk)", flush=True)
        if args.counts:
            print(f"downloads: {args.download_mb} MB, {args.counts} at once", flush=True)
            warm_up_download(env.app_port)
            for t in live:
                results.got[t.name] = downloads(t, args.counts, args.download_repeats)
        return results
    finally:
        stop_targets(targets)


def _report(args: argparse.Namespace, r: Results, header: str) -> None:
    """Print the run's tables (markdown) and the targets' verdicts."""
    print()
    print(header)
    for load in args.load_list:
        rows = [(t.name, t.label, r.cells[(t.name, load.key)]) for t in r.live]
        base = r.cells.get(("direct", load.key))
        print()
        print("\n".join(steady_table(load.title, rows, base, r.rss)))
        print()
        print("\n".join(threads_table(load.title, [x for x in rows if x[0] != "direct"])))
        if args.py_spy is not None:
            spied = [
                (
                    f"{t.label}, {load.title}",
                    breakdown(sorted(args.py_spy.glob(f"{t.name}@{load.key}-r*.txt"))),
                )
                for t in r.live
                if t.python
            ]
            print()
            print("\n".join(profile_table(spied)))
        if base is not None:
            print()
            print(
                f"Load generator at {load.title}: sent {base.late_ms(50) * 1000:.0f} µs "
                f"(p50), {base.late_ms(99) * 1000:.0f} µs (p99) after the due time when free "
                f"to send (direct row); the direct row's latency is the generator, the kernel "
                f"and the app together."
            )
    if r.sat:
        print()
        rows3 = [(t.name, t.label, r.sat[t.name]) for t in r.live]
        print("\n".join(saturation_table(args.saturate_connections, rows3)))
    if r.got:
        print()
        rows4 = [(t.name, t.label, r.got[t.name]) for t in r.live]
        print("\n".join(download_table(rows4, args.download_mb)))
    print()
    print("Targets (issue #13):")
    print("\n".join(verdicts(r.cells, r.got, args.download_mb)))
    for t in r.skipped:
        print(f"- row `{t.name}` not run: {t.skipped}")


def main() -> int:
    args = _args()
    if shutil.which(NGINX) is None and not Path(NGINX).exists():
        print("nginx not found (Debian: apt-get install nginx-light)", file=sys.stderr)
        return 2
    # Every process of a row runs this checkout's code: `python -m trafficmirror`
    # looks in the working directory first.
    os.chdir(ROOT)
    logdir = args.logs or Path(tempfile.mkdtemp(prefix="tm-livepath-"))
    logdir.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now().astimezone()
    load_start = os.getloadavg()
    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"started {started:%Y-%m-%d %H:%M %Z}; logs in {logdir}")
    print(f"checkout: {ROOT} {_commit()}")
    print(f"machine: {_describe_machine()}; load average {load_start[0]:.2f}", flush=True)

    big = logdir / "big.bin"
    with open(big, "wb") as f:  # sparse: reading it costs no disk I/O
        f.truncate(args.download_mb * 1_000_000)
    broker, bootstrap = start_broker(
        ["livepath:4", "livepath-mirror:4"], None, logdir / "broker.log"
    )
    backends = [broker]
    try:
        app_dir = logdir / "app"
        app_dir.mkdir(exist_ok=True)
        app_port = free_port()
        backends.append(start_nginx(app_dir, app_config(app_dir, app_port, big), app_port))
        if args.instructions:
            counts = (args.warmup_requests, args.requests)
            print(f"callgrind: {counts[1]} requests after {counts[0]}, one connection", flush=True)
            app_url = f"http://127.0.0.1:{app_port}"
            table = instruction_rows(args.row_list, app_url, bootstrap, logdir, counts)
            print()
            print("\n".join(table))
            return 0 if table else 2
        results = _measure(args, Env(app_port, bootstrap, logdir, record_help()))
    finally:
        for proc in reversed(backends):
            stop(proc)
    finished = datetime.datetime.now().astimezone()
    header = (
        f"Run {started:%Y-%m-%d %H:%M}..{finished:%H:%M %Z}, {_describe_machine()}, "
        f"load average {load_start[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
        f"checkout {_commit()}; {args.rounds} round(s) × {args.duration:g} s per row and load."
    )
    _report(args, results, header)
    if args.json:
        args.json.write_text(json.dumps(_figures(args.load_list, results), indent=1))
    return 0


def _figures(loads: list[Load], r: Results) -> dict[str, object]:
    steady = {}
    for t in r.live:
        for load in loads:
            c = r.cells[(t.name, load.key)]
            steady[f"{t.name}@{load.key}"] = {
                "p50_ms": c.ms(50),
                "p90_ms": c.ms(90),
                "p99_ms": c.ms(99),
                "cpu_us": c.cpu_us,
                "threads_s": c.threads,
                "requests": c.requests,
                "errors": c.errors,
            }
    return {
        "steady": steady,
        "peak_rss_mb": r.rss,
        "saturated": {name: s.__dict__ for name, s in r.sat.items()},
        "downloads": {name: [d.__dict__ for d in got] for name, got in r.got.items()},
    }


if __name__ == "__main__":
    sys.exit(main())
