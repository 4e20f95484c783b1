"""Replayer benchmark: what replaying costs, measured in one run against one shadow.

Fills topics on the in-memory broker (`trafficmirror dev-kafka`) with synthetic
recorded exchanges (replaying/traffic.py), starts a fast local shadow that
notes when each replayed request arrives (replaying/shadow.py), and measures
there: what wrk pushes through the shadow (the ceiling); `replay range --speed
max` with one process, with --no-results and with two processes on disjoint
partitions; the floor, the least a Python replay does (replaying/floor.py);
--amplify 3 (three requests per record: what a copy costs next to a record);
the rate achieved with --rate 100 and 1000; the lateness of `--speed 1` at
500/s; the same records as recorded over HTTP/2, replayed as h2c to the same
shadow (next to the HTTP/1.1 row: the HTTP/2 row's ratio to it); a topic of
authenticated, stateful traffic replayed with and without a transforms file
(five rewrite rules, value correlation, JWT re-sign: replaying/transforms.py);
WebSocket sessions to a WebSocket shadow, in messages per second
(replaying/websocket.py). Runs are interleaved and repeated; the table gives
medians with their spread (min..max) and the replay processes' CPU time per
request. With --profile, one more replay runs under py-spy and a second table
says which stage of a record's path its samples fall in. docs/ has the method
and figures.

    python bench/replay.py [--records 20000] [--repeats 3] [--concurrency 64] [--profile]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from procs import free_port, start, start_broker, stop, wait_port
from replaying.floor import floor_main
from replaying.profiling import profile
from replaying.report import pct, report
from replaying.runs import Run, replay, replay_argv, supports, wrk
from replaying.shadow import shadow_main
from replaying.traffic import BASE_US, PACED_GAP_US, PARTITIONS, fill
from replaying.transforms import fill_auth, write_transforms
from replaying.websocket import fill_ws, ws_row, ws_shadow_main

ROOT = Path(__file__).resolve().parent.parent
# The filling and the floor import the codec and the replayer (lazily, in
# functions): those of this checkout, whatever else is installed.
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20000, help="exchanges per --speed max run")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per configuration")
    parser.add_argument("--concurrency", type=int, default=64, help="replay --concurrency")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument(
        "--paced-seconds", type=float, default=5.0, help="length of each rate/lateness run"
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated subset of: "
        "ceiling,max1,nores,floor,max2,amp3,rate,lateness,transforms,h2,ws",
    )
    parser.add_argument("--ws-sessions", type=int, default=50, help="WebSocket sessions (ws row)")
    parser.add_argument(
        "--ws-messages", type=int, default=200, help="client messages per WebSocket session"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the table, profile one --speed max replay with py-spy (pip install py-spy)",
    )
    args = parser.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}

    def want(name: str) -> bool:
        return not only or name in only

    # What generates load (wrk, the replayers) gets one core, the shadow and the
    # broker the rest; two replay processes share that one core, so "max x2"
    # says what overlapping waits gain, not what a second core would.
    ncpu = os.cpu_count() or 1
    load_cpus = {0} if ncpu >= 2 else None
    rest_cpus = set(range(1, ncpu)) if ncpu >= 2 else None
    has_speed = supports("--speed")
    has_rate = supports("--rate")
    has_transforms = supports("--transforms")
    has_amplify = supports("--amplify")
    has_http2 = supports("--http-version")

    logdir = Path(tempfile.mkdtemp(prefix="tm-bench-replay-"))
    paced_count = int(args.paced_seconds * 1000)  # enough for --rate 1000 for that long
    try:
        broker, bootstrap = start_broker(
            ["bench-max:4", "bench-paced:4", "bench-auth:4", "bench-h2:4", "bench-ws:4"],
            rest_cpus,
            logdir / "broker.log",
        )
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    procs = [broker]
    try:
        port = free_port()
        shadow = start(
            [sys.executable, __file__, "--_shadow", str(port)], rest_cpus, logdir / "shadow.log"
        )
        procs.append(shadow)
        wait_port(port)
        target = f"http://127.0.0.1:{port}"
        ws_port = free_port()
        if want("ws"):
            procs.append(
                start(
                    [sys.executable, __file__, "--_ws-shadow", str(ws_port)],
                    rest_cpus,
                    logdir / "ws-shadow.log",
                )
            )
            wait_port(ws_port)
            fill_ws(bootstrap, "bench-ws", args.ws_sessions, args.ws_messages, "w")
        ws_runs: list[Run] = []

        t0 = time.monotonic()
        fill(bootstrap, "bench-max", args.records, 100, "m")
        fill(bootstrap, "bench-paced", paced_count, PACED_GAP_US, "p")
        if want("transforms") and has_transforms:
            fill_auth(bootstrap, "bench-auth", args.records, 100, "a")
        if want("h2") and has_http2:
            fill(bootstrap, "bench-h2", args.records, 100, "h", version="HTTP/2.0")
        recorded = {f"p-{i}": BASE_US + i * PACED_GAP_US for i in range(paced_count)}
        print(
            f"topics: bench-max {args.records} exchanges, bench-paced {paced_count} exchanges "
            f"{PACED_GAP_US / 1000:g} ms apart (500/s), {PARTITIONS} partitions each, written in "
            f"{time.monotonic() - t0:.1f}s",
            flush=True,
        )
        print(
            f"cpus: {ncpu}; wrk and replayers pinned to {sorted(load_cpus or [])}, shadow and "
            f"broker to {sorted(rest_cpus or [])}; load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; logs in {logdir}",
            flush=True,
        )
        if not has_speed:
            print("NOTE: replay range has no --speed yet: it sends as fast as it can", flush=True)
        if not has_rate:
            print("NOTE: replay range has no --rate yet: rate rows are not measured", flush=True)
        if want("transforms") and not has_transforms:
            print("NOTE: replay range has no --transforms yet: no transforms row", flush=True)
        if want("h2") and not has_http2:
            print("NOTE: replay range has no --http-version yet: no HTTP/2 row", flush=True)

        speed_max = ["--speed", "max"] if has_speed else []

        def one(topic: str, end: str, extra: list[str]) -> list[list[str]]:
            return [replay_argv(bootstrap, topic, target, [], end, args.concurrency, extra)]

        paced_end = str(max(1, int(500 * args.paced_seconds) // PARTITIONS - 1))
        configs: dict[str, tuple[list[list[str]], bool]] = {}
        if want("max1") or want("h2"):
            configs["max1"] = (one("bench-max", "end", speed_max), False)
        if want("h2") and has_http2:
            # The same records, recorded as HTTP/2: --http-version auto sends them as h2c.
            configs["h2"] = (one("bench-h2", "end", speed_max), False)
        if want("nores"):
            configs["nores"] = (one("bench-max", "end", [*speed_max, "--no-results"]), False)
        if want("floor"):
            floor = [
                sys.executable,
                __file__,
                "--_floor",
                bootstrap,
                "bench-max",
                target,
                str(args.records),
                str(args.concurrency),
            ]
            configs["floor"] = ([floor], False)
        if want("max2"):
            configs["max2"] = (
                [
                    replay_argv(
                        bootstrap, "bench-max", target, parts, "end", args.concurrency, speed_max
                    )
                    for parts in ([0, 1], [2, 3])
                ],
                False,
            )
        if want("amp3") and has_amplify:
            configs["amp3"] = (one("bench-max", "end", [*speed_max, "--amplify", "3"]), False)
        if want("rate") and has_rate:
            for rate in (100, 1000):
                end = str(max(1, int(rate * args.paced_seconds) // PARTITIONS - 1))
                configs[f"rate{rate}"] = (
                    one("bench-paced", end, [*speed_max, "--rate", str(rate)]),
                    False,
                )
        if want("transforms") and has_transforms:
            transforms = write_transforms(logdir)
            configs["plain"] = (one("bench-auth", "end", speed_max), False)
            configs["transforms"] = (
                one("bench-auth", "end", [*speed_max, "--transforms", str(transforms)]),
                False,
            )
        if want("lateness") and has_speed:
            configs["speed1"] = (one("bench-paced", paced_end, ["--speed", "1"]), True)

        ceiling: list[float] = []
        runs: dict[str, list[Run]] = {name: [] for name in configs}
        if want("ceiling"):
            wrk(port, args.concurrency, 1.0, load_cpus)  # warm-up
        for rep in range(args.repeats):
            log = logdir / f"run-{rep}.log"
            if want("ceiling"):
                ceiling.append(wrk(port, args.concurrency, args.duration, load_cpus))
                print(f"  run {rep + 1} {'wrk':8} {ceiling[-1]:8.0f} req/s", flush=True)
            for name, (argvs, timed) in configs.items():
                run = replay(argvs, port, load_cpus, log, recorded if timed else None)
                runs[name].append(run)
                extra = ""
                if timed:
                    extra = (
                        f"; at the shadow p50 {pct(run.lateness_ms, 0.5):.2f} ms "
                        f"p99 {pct(run.lateness_ms, 0.99):.2f} ms"
                    )
                print(
                    f"  run {rep + 1} {name:8} {run.rps:8.1f} req/s  {run.cpu_us:4.0f} us CPU/req  "
                    f"({run.count} arrived; {run.summary}){extra}",
                    flush=True,
                )
                if run.code:
                    print(f"  WARNING: exit code {run.code}, see {log}", flush=True)
            if want("ws"):
                ws_argv = replay_argv(
                    bootstrap,
                    "bench-ws",
                    f"http://127.0.0.1:{ws_port}",
                    [],
                    "end",
                    args.concurrency,
                    speed_max,
                )
                ws_runs.append(replay([ws_argv], ws_port, load_cpus, log))
                run = ws_runs[-1]
                print(
                    f"  run {rep + 1} {'ws':8} {run.rps:8.1f} msg/s  {run.cpu_us:4.0f} us CPU/msg  "
                    f"({run.count} arrived; {run.summary})",
                    flush=True,
                )
        report(ceiling, runs, args)
        ws_row(ws_runs, args.ws_sessions, args.ws_messages)
        if args.profile:
            profile(one("bench-max", "end", speed_max)[0], port, load_cpus, logdir)
            if "h2" in configs:
                argv = configs["h2"][0][0]
                profile(argv, port, load_cpus, logdir, "one --speed max HTTP/2 replay")
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        for proc in procs:
            stop(proc)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--_shadow":
        shadow_main(int(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--_ws-shadow":
        ws_shadow_main(int(sys.argv[2]))
    elif len(sys.argv) == 7 and sys.argv[1] == "--_floor":
        floor_main(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    else:
        sys.exit(main())
