"""Recorder benchmark: what recording costs, measured in one run.

Measures requests/s and p50/p99 latency through

  plain   `mitmdump --mode reverse:APP` with no addon,
  addon   `mitmdump -s recorder/addon.py` with our addon recording to Kafka,
  record  `trafficmirror record` (mitmproxy embedded, only the addons it needs),
and, with --configs, the rows of `mitmdump -s bench/scripts/floor_addon.py`
(its docstring says more), which show where the addon's cost lies:

  script      a script that records nothing: mitmproxy's dispatch to it,
  floor-bare  one produce() of fixed bytes per exchange on a bare
              confluent-kafka producer: the least any recorder can do,
  floor       the same on our producer: the addon without building and
              encoding its events;

all in front of the same sample app process (`python -m trafficmirror.demo.apps
app`), recording to the same in-memory broker (`trafficmirror dev-kafka`), and
prints a table with the median of the repeats and the ratios against plain
mitmdump (the median of each repeat against the plain run of the same repeat).
Targets from the issue: addon >= 0.95x plain, record >= 1.8x plain. It also
reports the proxy process's CPU time per request (all its threads, from
/proc): what a request costs, less swayed than req/s when other work shares
the machine.

Load: `wrk` (Debian package `wrk`) with a fixed number of keep-alive
connections and a fixed duration; when wrk is missing, a small asyncio load
generator in a separate process does the same (said clearly in the output).

CPU placement, on a 2-core machine: the proxy under test gets core 0 to itself
(all of its threads: mitmproxy's event loop, the producer's poll thread and
librdkafka's threads, so the recorder pays for its own background work), and
the app, the broker and the load generator share core 1. The proxy is the
bottleneck by a wide margin (it does several times the work per request of the
app), so core 1 is never what is measured; the script checks this by first
measuring the app alone and warns if the proxies come within half of it. Runs
are interleaved (plain, addon, record, plain, ...) so slow drifts of the
machine hit every configuration alike. On a machine with one core nothing is
pinned (and the numbers mean less).

Side by side (after the runs above, unless --no-side-by-side): all the proxies
at once on the proxy core, each under its own wrk, and their CPU time per
request compared. They see the same machine at the same moment, so the ratio
holds still where runs one after the other swing by more than the addon's
cost; on a saturated core it is the ratio of their throughputs.

--instructions: instead of timing, counts the instructions each proxy executes
per request under valgrind's callgrind (independent of the machine's load;
blind to cache misses and the kernel, so it reads low).

    python bench/recorder.py [--duration 10] [--connections 16] [--repeats 3]
    python bench/recorder.py --configs plain,script,floor-bare,floor,addon --side-by-side-only
    python bench/recorder.py --instructions [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from procs import free_port, run_wrk, start, start_broker, stop, wait_port

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "recorder" / "addon.py"
FLOOR = ROOT / "bench" / "scripts" / "floor_addon.py"
BIN = Path(sys.executable).parent
MITMDUMP = str(BIN / "mitmdump") if (BIN / "mitmdump").exists() else shutil.which("mitmdump")
PATH = "/hello?x=1"
#: The topic every recording proxy produces to.
TOPIC = "bench"


# -- load generation ----------------------------------------------------------


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
        [sys.executable, __file__, "--_pyload", str(port), str(connections), str(duration)],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,  # noqa: PLW1509
    ).stdout.split()
    return Result(float(out[0]), float(out[1]), float(out[2]), int(out[3]), int(out[4]))


# -- the configurations -------------------------------------------------------


@dataclass
class Config:
    name: str
    describe: str
    results: list[Result] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)

    def argv(self, app: str, port: int, bootstrap: str, topic: str) -> list[str]:
        listen = f"127.0.0.1:{port}"
        # Same live behaviour for all three: reverse mode, client's Host kept.
        common = ["--mode", f"reverse:{app}@{listen}", "--set", "keep_host_header=true"]
        if self.name == "plain":
            return [str(MITMDUMP), *common]
        if self.name == "plain-q":
            return [str(MITMDUMP), "-q", *common]
        if self.name == "addon":
            return [
                str(MITMDUMP),
                "-s",
                str(ADDON),
                *common,
                "--set",
                f"trafficmirror_bootstrap_servers={bootstrap}",
                "--set",
                f"trafficmirror_topic={topic}",
            ]
        if self.name in _FLOOR_MODES:
            return [
                "env",
                f"TRAFFICMIRROR_BENCH_FLOOR={_FLOOR_MODES[self.name]}",
                f"TRAFFICMIRROR_BENCH_BOOTSTRAP={bootstrap}",
                f"TRAFFICMIRROR_BENCH_TOPIC={topic}",
                str(MITMDUMP),
                "-s",
                str(FLOOR),
                *common,
            ]
        if self.name == "record":
            return [
                sys.executable,
                "-m",
                "trafficmirror",
                "record",
                "-b",
                bootstrap,
                "-t",
                topic,
                "--upstream",
                app,
                "--listen",
                listen,
            ]
        raise ValueError(self.name)

    def median(self) -> Result:
        return Result(
            statistics.median(r.rps for r in self.results),
            statistics.median(r.p50_ms for r in self.results),
            statistics.median(r.p99_ms for r in self.results),
            sum(r.errors for r in self.results),
            sum(r.requests for r in self.results),
            statistics.median(r.cpu_us for r in self.results),
        )


CONFIGS = {
    "plain": "mitmdump, reverse mode, no addon",
    "plain-q": "mitmdump -q (no flow printing), no addon",
    "script": "mitmdump -s floor_addon.py, producing nothing",
    "floor-bare": "mitmdump -s floor_addon.py, fixed bytes, bare confluent-kafka",
    "floor": "mitmdump -s floor_addon.py, fixed bytes, our producer",
    "addon": "mitmdump -s recorder/addon.py",
    "record": "trafficmirror record",
}


#: The rows of bench/scripts/floor_addon.py, and its TRAFFICMIRROR_BENCH_FLOOR.
_FLOOR_MODES = {"script": "none", "floor-bare": "bare", "floor": "sink"}


def start_app(cpus: set[int] | None, logdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The sample app every proxy is put in front of: (process, its URL)."""
    port = free_port()
    app = start(
        [sys.executable, "-m", "trafficmirror.demo.apps", "app", "--port", str(port)],
        cpus,
        logdir / "app.log",
    )
    wait_port(port)
    return app, f"http://127.0.0.1:{port}"


def start_backends(
    cpus: set[int] | None, logdir: Path
) -> tuple[list[subprocess.Popen[bytes]], str, str]:
    """The broker (topic `TOPIC`, 4 partitions) and the app: (processes, bootstrap, app URL).

    Raises RuntimeError when the broker does not start.
    """
    broker, bootstrap = start_broker([f"{TOPIC}:4"], cpus, logdir / "broker.log")
    try:
        app, app_url = start_app(cpus, logdir)
    except BaseException:
        stop(broker)
        raise
    return [broker, app], bootstrap, app_url


# -- instruction counts (--instructions) --------------------------------------


def _get(conn: http.client.HTTPConnection) -> None:
    conn.request("GET", PATH, headers={"Host": "bench.example"})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"proxy answered {response.status}")


def _callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def instructions(
    config: Config,
    app_url: str,
    bootstrap: str,
    topic: str,
    logdir: Path,
    counts: tuple[int, int],
) -> tuple[float, float]:
    """Instructions per request of `config`'s proxy under callgrind: (event loop, other threads).

    Counting starts after `counts[0]` warm-up requests and covers `counts[1]`
    requests, one at a time on one keep-alive connection. Valgrind runs the
    threads one at a time, so this is what the proxy executes in user space
    whatever else runs on the machine. The event loop is the main thread; the
    others are the producer's poll thread and librdkafka's threads (their
    share is larger here than at full speed: at valgrind's pace their batches
    are small).
    """
    warmup, measured = counts
    port = free_port()
    out = logdir / f"callgrind-{config.name}.out"
    argv = config.argv(app_url, port, bootstrap, topic)
    setenv: list[str] = []
    if argv[0] == "env":  # env VAR=value ... command: valgrind goes after the variables
        end = next(i for i, arg in enumerate(argv[1:], 1) if "=" not in arg)
        setenv, argv = argv[:end], argv[end:]
    if argv[0] == MITMDUMP:  # a script: valgrind must run its interpreter
        argv = [sys.executable, *argv]
    proc = start(
        [
            *setenv,
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}",
            *argv,
        ],
        None,
        logdir / f"callgrind-{config.name}.log",
    )
    try:
        wait_port(port, timeout=600)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for _ in range(warmup):
            _get(conn)
        _callgrind(proc.pid, "--instr=on")
        for _ in range(measured):
            _get(conn)
        _callgrind(proc.pid, "--instr=off")
        conn.close()
    finally:
        stop(proc, timeout=120)
    main_thread, others = 0, 0
    for dump in logdir.glob(f"callgrind-{config.name}.out*"):
        total = re.search(r"^totals: (\d+)", dump.read_text(), re.M)
        if total is None:
            continue
        if dump.name.endswith("-01"):
            main_thread += int(total[1])
        else:
            others += int(total[1])
    return main_thread / measured, others / measured


def instruction_run(args: argparse.Namespace, names: list[str]) -> int:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("--instructions needs valgrind (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    logdir = Path(tempfile.mkdtemp(prefix="tm-bench-cg-"))
    try:
        procs, bootstrap, app_url = start_backends(None, logdir)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        counts = (args.warmup_requests, args.requests)
        print(
            f"callgrind: {counts[1]} requests after {counts[0]} warm-up, one keep-alive "
            f"connection, GET {PATH}; logs in {logdir}",
            flush=True,
        )
        rows = []
        for name in names:
            config = Config(name, CONFIGS[name])
            loop, others = instructions(config, app_url, bootstrap, TOPIC, logdir, counts)
            rows.append((config, loop, others))
            print(
                f"  {name:8} event loop {loop / 1e6:6.3f} M  other threads {others / 1e6:6.3f} M",
                flush=True,
            )
    finally:
        for proc in procs:
            stop(proc)
    base = next((r for r in rows if r[0].name == "plain"), None)
    print()
    print("| configuration | M instructions/req, event loop | other threads | total | vs plain |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for config, loop, others in rows:
        ratio = f"{(loop + others) / (base[1] + base[2]) - 1:+.1%}" if base else "-"
        print(
            f"| {config.describe} | {loop / 1e6:.3f} | {others / 1e6:.3f} "
            f"| {(loop + others) / 1e6:.3f} | {ratio} |"
        )
    return 0


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
            f"| {_ratio(statistics.median(ratios) if ratios else None)}{spread} |"
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


def paired(config: Config, base: Config | None, attr: str) -> float | None:
    """Median over the repeats of config / plain, each against the plain run just before it.

    Runs are interleaved, so each pair ran minutes apart at most: on a shared
    machine whose speed drifts, the ratio of neighbours is steadier than the
    ratio of two medians.
    """
    if base is None or not base.results:
        return None
    ratios = [
        getattr(r, attr) / getattr(b, attr)
        for r, b in zip(config.results, base.results, strict=True)
        if getattr(b, attr)
    ]
    return statistics.median(ratios) if ratios else None


def report(configs: list[Config], direct: Result) -> None:
    plain = next((c for c in configs if c.name == "plain"), None)
    print()
    print(
        "| configuration | req/s (median) | p50 ms | p99 ms | vs plain mitmdump "
        "| proxy CPU µs/req | CPU vs plain | errors |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    ratios: dict[str, float] = {}
    for config in configs:
        m = config.median()
        rps_ratio = paired(config, plain, "rps")
        cpu_ratio = paired(config, plain, "cpu_us")
        if rps_ratio is not None:
            ratios[config.name] = rps_ratio
        print(
            f"| {config.describe} | {m.rps:.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} "
            f"| {_ratio(rps_ratio)} | {m.cpu_us:.0f} | {_ratio(cpu_ratio)} | {m.errors} |"
        )
    print(
        f"| (app alone, no proxy) | {direct.rps:.0f} | {direct.p50_ms:.2f} | "
        f"{direct.p99_ms:.2f} | | | | {direct.errors} |"
    )
    if "addon" in ratios:
        verdict = "met" if ratios["addon"] >= 0.95 else "NOT met"
        print(f"target addon >= 0.95x plain, one at a time: {ratios['addon']:.2f}x, {verdict}")
    if "record" in ratios:
        verdict = "met" if ratios["record"] >= 1.8 else "NOT met"
        print(f"target record >= 1.8x plain, one at a time: {ratios['record']:.2f}x, {verdict}")
    slowest_ok = max(c.median().rps for c in configs)
    if slowest_ok > direct.rps / 2:
        print(
            "WARNING: a proxy reached more than half of the app's own rate; the app/load "
            "core may be limiting the result"
        )


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--_pyload":
        pyload_main(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    else:
        sys.exit(main())
