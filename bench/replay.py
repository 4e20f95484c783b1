"""Replayer benchmark: what replaying costs, measured in one run against one shadow.

Fills topics on the in-memory broker (`trafficmirror dev-kafka`) with synthetic
recorded exchanges (small GETs of a JSON API, encoded with the real codec, keyed
and timestamped like the recorder does), starts one fast local shadow (a
minimal asyncio HTTP/1.1 server in its own process that answers every request
with the recorded response and notes when each replayed request arrived), and
measures:

  ceiling   `wrk` against the shadow: what this machine can push through it;
  max x1    `replay range --speed max` (or, before time warp exists, plain
            `replay range`, which sends as fast as it can), one process;
  floor     the least a replay in Python does per record, in a process of
            its own: consume, decode, build, send and read the response
            with the replayer's own client; no compare, results, offsets;
  max x2    two `replay range` processes at once on disjoint partitions
            (partitions 0-1 and 2-3), their arrivals added up;
  rate R    `replay range --rate R` at 100 and 1000 requests/s: achieved rate
            seen by the shadow ((n - 1) / (last arrival - first arrival));
  lateness  `replay range --speed 1` over exchanges recorded 2 ms apart
            (500/s): at the shadow, arrival - (first arrival + recorded offset),
            p50/p99 (the first request is the anchor, so this is the drift and
            jitter of the schedule, not the start-up delay).

Requests/s of the replay runs are counted at the shadow between the first and
the last arrival (start-up, reading the topic's metadata, and the final flush
are excluded; the process's own summary line, which includes them, is kept in
the log). Runs are interleaved and repeated; the table shows medians, with the
spread (min..max) so noise is visible.

CPU placement on 2+ cores: what generates load (wrk, the replayer processes)
gets core 0; the shadow and the broker share core 1. With two replay processes
both share core 0, the same CPU budget wrk had, so "max x2" says what a second
process gains from overlapping waits, not from a second core (this machine has
none to spare). Comparison and results (`<topic>.results`) stay on, as in a
real replay.

With `--profile`, one more `--speed max` replay runs under py-spy and a second
table says which stage of a record's path its samples fall in.

    python bench/replay.py [--records 20000] [--repeats 3] [--concurrency 64] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from procs import affinity, free_port, run_wrk, start, start_broker, stop, wait_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Partitions per topic. The in-memory broker keeps about 5 MB per partition
#: (older records are dropped), so 20,000 exchanges need four.
PARTITIONS = 4
#: Recorded pace of the paced topic: one exchange every 2 ms = 500/s.
PACED_GAP_US = 2000
_BASE_US = 1_760_000_000_000_000
_RESPONSE_BODY = b'{"id":1,"name":"widget","price":9.5,"tags":["a","b"]}'
_WRK_PATH = "/api/items/1?fields=name,price"


# -- the shadow -----------------------------------------------------------------

_REPLAY_MARK = b"\r\nx-trafficmirror-replay: "
_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(_RESPONSE_BODY)).encode()
    + b"\r\n\r\n"
    + _RESPONSE_BODY
)


class _ShadowProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive, bodies by Content-Length; notes replayed requests' arrival."""

    def __init__(self, arrivals: list[tuple[float, bytes]]) -> None:
        self.arrivals = arrivals
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self.buffer + data if self.buffer else data
        out = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end == -1:
                break
            head = buf[:end]
            lower = head.lower()
            length = 0
            at = lower.find(b"\r\ncontent-length:")
            if at != -1:
                stop_at = lower.find(b"\r\n", at + 2)
                length = int(lower[at + 17 : stop_at if stop_at != -1 else None])
            total = end + 4 + length
            if len(buf) < total:
                break
            mark = lower.find(_REPLAY_MARK)
            if mark != -1:
                stop_at = head.find(b"\r\n", mark + 2)
                self.arrivals.append(
                    (now, head[mark + len(_REPLAY_MARK) : stop_at if stop_at != -1 else None])
                )
            elif head.startswith(b"GET /__arrivals "):
                body = b"\n".join(b"%.6f %s" % (t, i) for t, i in self.arrivals)
                self.arrivals.clear()
                out.append(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                buf = buf[total:]
                continue
            out.append(_OK)
            buf = buf[total:]
        self.buffer = buf
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


def shadow_main(port: int) -> None:
    """Entry point of the shadow process."""
    arrivals: list[tuple[float, bytes]] = []

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _ShadowProtocol(arrivals), "127.0.0.1", port, backlog=1024
        )
        stopped = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        async with server:
            await stopped.wait()

    asyncio.run(serve())


def floor_main(bootstrap: str, topic: str, target: str, count: int, concurrency: int) -> None:
    """The least a replay in Python does per record, as a process of its own (`--_floor`).

    Consume from every partition with confluent-kafka, decode, build the
    request, send it and read the response with the replayer's own client on
    its event loop, `concurrency` at a time: no comparison, no results, no
    offsets, no metrics, no schedule. What `replay range` costs above this is
    the product (comparison, results, at-least-once accounting, pacing).
    """
    from confluent_kafka import Consumer, TopicPartition

    from replayer.eventloop import run
    from replayer.models import OutgoingRequest, Target
    from replayer.sending.http1 import Http1Transport
    from replayer.sending.request import build_request
    from schemas.codec import Codec

    async def go() -> None:
        consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "bench-floor", "enable.auto.commit": False}
        )
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        codec, parsed = Codec(), Target.parse(target)
        transport = Http1Transport(limit=concurrency)
        queue: asyncio.Queue[OutgoingRequest] = asyncio.Queue(maxsize=4 * concurrency)
        started = time.monotonic()

        async def sender() -> None:
            while True:
                request = await queue.get()
                await transport.send(request)
                queue.task_done()

        tasks = [asyncio.create_task(sender()) for _ in range(concurrency)]
        got = 0
        while got < count:
            messages = consumer.consume(500, 0)
            if not messages:
                await asyncio.sleep(0.001)
                continue
            for message in messages:
                got += 1
                await queue.put(build_request(codec.decode(message.value()), parsed))
        await queue.join()
        elapsed = time.monotonic() - started
        for task in tasks:
            task.cancel()
        await transport.aclose()
        consumer.close()
        print(f"replayed topic {topic} to {target} {got} records in {elapsed:.2f}s", flush=True)

    run(go())


def fetch_arrivals(port: int) -> list[tuple[float, str]]:
    """The replayed requests the shadow saw since the last call: (monotonic time, id)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__arrivals", timeout=30) as resp:  # noqa: S310
        text = resp.read().decode()
    out = []
    for line in text.splitlines():
        stamp, _, ident = line.partition(" ")
        out.append((float(stamp), ident))
    return out


# -- the recorded traffic -------------------------------------------------------


def make_event(index: int, start_us: int, prefix: str) -> dict[str, object]:
    """A small recorded GET, like a browser or service calling a JSON API."""
    conn = index % 200
    item = index % 5000
    headers = [
        (b"Host", b"shop.example.com"),
        (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64) bench/1.0"),
        (b"Accept", b"application/json"),
        (b"Accept-Encoding", b"gzip, deflate"),
        (b"Accept-Language", b"en-US,en;q=0.9"),
        (b"Cookie", b"session=3f9a1c0e7d; theme=dark"),
        (b"X-Request-Id", f"req-{index:08d}".encode()),
        (b"Connection", b"keep-alive"),
    ]
    flat = [part for pair in headers for part in pair]
    return {
        "id": f"{prefix}-{index}",
        "request_start_us": start_us,
        "request_end_us": start_us + 80,
        "response_start_us": start_us + 900,
        "response_end_us": start_us + 950,
        "client": {"host": "10.1.2.3", "port": 40000 + conn},
        "server": {"host": "10.0.0.1", "port": 8080},
        "scheme": "http",
        "method": "GET",
        "authority": "shop.example.com",
        "path": f"/api/items/{item}?fields=name,price".encode(),
        "http_version": "HTTP/1.1",
        "request": {
            "headers": flat,
            "body": b"",
            "body_truncated": False,
            "body_length": 0,
            "trailers": None,
        },
        "response": {
            "status": 200,
            "reason": b"OK",
            "http_version": "HTTP/1.1",
            "message": {
                "headers": [b"Content-Type", b"application/json"],
                "body": _RESPONSE_BODY,
                "body_truncated": False,
                "body_length": len(_RESPONSE_BODY),
                "trailers": None,
            },
        },
        "error": None,
        "recorder": {"recorder_id": "bench", "sampling_rate": 1.0, "redactions": []},
    }


def fill(bootstrap: str, topic: str, count: int, gap_us: int, prefix: str) -> None:
    """Write `count` exchanges `gap_us` apart; connection c goes to partition c % 4."""
    from confluent_kafka import Producer

    from schemas.codec import Codec

    codec = Codec()
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "queue.buffering.max.messages": 500000}
    )
    for index in range(count):
        start_us = _BASE_US + index * gap_us
        event = make_event(index, start_us, prefix)
        encoded = codec.encode(event)
        client = event["client"]
        port = client["port"]  # type: ignore[index]
        producer.produce(
            topic,
            value=encoded.value,
            key=f"10.1.2.3:{port}".encode(),
            headers=encoded.headers,
            timestamp=start_us // 1000,
            partition=(index % 200) % PARTITIONS,
        )
        if index % 10000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} records not delivered to {topic}")


# -- measurements ---------------------------------------------------------------


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
    return run_wrk(f"http://127.0.0.1:{port}{_WRK_PATH}", connections, duration, cpus).rps


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


#: Where a sample of the replayer's profile goes: the innermost frame matching one of these.
_STAGES = (
    ("decode", ("Codec.decode",)),
    ("build the request", ("build_request",)),
    ("compare", ("compare_exchange", "build_result", "_response (replayer/comparison")),
    ("results: encode, produce", ("result_message", "ResultSink.send")),
    ("results: producer's poll thread", ("ResultSink._poll_loop",)),
    ("metrics (prometheus_client)", ("prometheus_client",)),
    ("HTTP: sender, transport, socket I/O", ("Sender.", "http1.py", "selector_events.py")),
    ("schedule and merge (time warp)", ("clock.py", "merge.py", "ratelimit.py")),
    ("consume (Kafka thread, records)", ("concurrent/futures/thread.py", "Record.from_message")),
    ("start-up (imports, connect)", ("importlib", "cli_comparison.py")),
)


def stages(raw: Path) -> list[tuple[str, float]]:
    """Share of py-spy samples (raw format) per stage of the record's path."""
    counts: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not number.isdigit():
            continue
        n = int(number)
        total += n
        stage = "other (start-up, exit)"
        for frame in reversed(stack.split(";")):
            # uvloop's loop is C: its own time shows as the innermost Python frame Runner.run.
            if "run_forever" in frame or "Runner.run (" in frame:
                stage = "event loop and pipeline glue"
                break
            found = next((name for name, subs in _STAGES if any(s in frame for s in subs)), None)
            if found:
                stage = found
                break
        counts[stage] = counts.get(stage, 0) + n
    return sorted(((k, v / total) for k, v in counts.items()), key=lambda kv: -kv[1])


def profile(argv: list[str], shadow_port: int, cpus: set[int] | None, logdir: Path) -> None:
    """One `--speed max` replay under py-spy; prints where its time goes."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        print("py-spy is not installed next to this Python: no profile", flush=True)
        return
    raw = logdir / "profile.txt"
    fetch_arrivals(shadow_port)
    with open(logdir / "profile.log", "ab") as log:
        subprocess.run(
            [str(spy), "record", "-r", "250", "-f", "raw", "-o", str(raw), "--", *argv],
            stdout=log,
            stderr=log,
            check=False,
            preexec_fn=affinity(cpus),  # noqa: PLW1509
        )
    fetch_arrivals(shadow_port)
    if not raw.exists():
        print("py-spy wrote no profile (see profile.log)", flush=True)
        return
    print()
    print("| where one --speed max replay's time goes (py-spy samples) | share |")
    print("| --- | ---: |")
    for stage, share in stages(raw):
        print(f"| {stage} | {share * 100:.0f} % |")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    low, mid, high = (fmt.format(v) for v in (min(values), statistics.median(values), max(values)))
    return f"{mid} ({low}..{high})"


def supports(option: str) -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "trafficmirror", "replay", "range", "--help"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return option in out


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
        help="comma-separated subset of: ceiling,max1,nores,floor,max2,rate,lateness",
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

    ncpu = os.cpu_count() or 1
    load_cpus = {0} if ncpu >= 2 else None
    rest_cpus = set(range(1, ncpu)) if ncpu >= 2 else None
    has_speed = supports("--speed")
    has_rate = supports("--rate")

    logdir = Path(tempfile.mkdtemp(prefix="tm-bench-replay-"))
    paced_count = int(args.paced_seconds * 1000)  # enough for --rate 1000 for that long
    try:
        broker, bootstrap = start_broker(
            ["bench-max:4", "bench-paced:4"], rest_cpus, logdir / "broker.log"
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

        t0 = time.monotonic()
        fill(bootstrap, "bench-max", args.records, 100, "m")
        fill(bootstrap, "bench-paced", paced_count, PACED_GAP_US, "p")
        recorded = {f"p-{i}": _BASE_US + i * PACED_GAP_US for i in range(paced_count)}
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

        speed_max = ["--speed", "max"] if has_speed else []

        def one(topic: str, end: str, extra: list[str]) -> list[list[str]]:
            return [replay_argv(bootstrap, topic, target, [], end, args.concurrency, extra)]

        paced_end = str(max(1, int(500 * args.paced_seconds) // PARTITIONS - 1))
        configs: dict[str, tuple[list[list[str]], bool]] = {}
        if want("max1"):
            configs["max1"] = (one("bench-max", "end", speed_max), False)
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
        if want("rate") and has_rate:
            for rate in (100, 1000):
                end = str(max(1, int(rate * args.paced_seconds) // PARTITIONS - 1))
                configs[f"rate{rate}"] = (
                    one("bench-paced", end, [*speed_max, "--rate", str(rate)]),
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
        report(ceiling, runs, args)
        if args.profile:
            profile(one("bench-max", "end", speed_max)[0], port, load_cpus, logdir)
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        for proc in procs:
            stop(proc)
    return 0


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


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--_shadow":
        shadow_main(int(sys.argv[2]))
    elif len(sys.argv) == 7 and sys.argv[1] == "--_floor":
        floor_main(*sys.argv[2:5], int(sys.argv[5]), int(sys.argv[6]))
    else:
        sys.exit(main())
