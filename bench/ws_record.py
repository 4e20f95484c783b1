"""What recording WebSocket messages costs the proxy: CPU per message, side by side.

One echo app (a `websockets` server, in this process on its own thread) behind
three proxies, each pinned to core 0 with all its threads: plain `mitmdump`
(reverse mode, no recording), `record` with a filter that leaves every upgrade
out (the proxy with the recorder loaded, recording no message), and `record`
recording every message to the in-memory broker (`trafficmirror dev-kafka`).
The clients (threads of this process, pinned with the app and the broker to
core 1) hold chat-like sessions: each sends a text message of `--size` bytes
and waits for its echo, `--round-trips` times. A run's figure is the proxy's
CPU time (all threads, /proc) per message relayed, two per round trip; runs
are interleaved over `--repeats`, the table gives medians and the ratio to the
filtered-out `record` of the same repeat (what recording adds).

    python bench/ws_record.py [--clients 4] [--round-trips 2000] [--size 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from procs import free_port, start, start_broker, stop, wait_port
from recording.load import cpu_seconds

TOPIC = "bench-ws"
CORE_PROXY = {0}
CORE_REST = {1}


@dataclass
class Run:
    name: str
    messages: int
    seconds: float
    cpu_us: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def start_echo() -> tuple[object, int]:
    from websockets.sync.server import ServerConnection, serve

    def echo(conn: ServerConnection) -> None:
        for message in conn:
            conn.send(message)

    server = serve(echo, "127.0.0.1", 0, compression=None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.socket.getsockname()[1])


def proxy_args(name: str, port: int, app: str, bootstrap: str) -> list[str]:
    if name == "mitmdump":
        mitmdump = str(Path(sys.executable).parent / "mitmdump")
        return [mitmdump, "--mode", f"reverse:{app}@127.0.0.1:{port}", "-q"]
    args = [sys.executable, "-m", "trafficmirror", "record", "-b", bootstrap, "-t", TOPIC]
    args += ["--upstream", app, "--listen", f"127.0.0.1:{port}"]
    if name == "record, filtered out":
        args += ["--filter", "~u /nothing-matches"]
    return args


def sessions(port: int, clients: int, round_trips: int, size: int) -> int:
    """Run `clients` sessions at once; the number of messages relayed (both directions)."""
    from websockets.sync.client import connect

    payload = "x" * size
    done = [0] * clients

    def one(i: int) -> None:
        with connect(f"ws://127.0.0.1:{port}/chat/{i}", compression=None) as ws:
            for _ in range(round_trips):
                ws.send(payload)
                ws.recv(timeout=30)
                done[i] += 2

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done)


def measure(
    name: str, app: str, bootstrap: str, logdir: Path, clients: int, round_trips: int, size: int
) -> Run:
    port = free_port()
    proxy = start(proxy_args(name, port, app, bootstrap), CORE_PROXY, logdir / "proxy.log")
    try:
        wait_port(port)
        sessions(port, clients, max(round_trips // 10, 1), size)  # warm-up
        cpu = cpu_seconds(proxy.pid)
        started = time.perf_counter()
        messages = sessions(port, clients, round_trips, size)
        seconds = time.perf_counter() - started
        cpu_us = (cpu_seconds(proxy.pid) - cpu) / max(messages, 1) * 1e6
    finally:
        stop(proxy)
    return Run(name, messages, seconds, cpu_us)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    opts = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, CORE_REST)
    names = ["mitmdump", "record, filtered out", "record, recording"]
    runs: dict[str, list[Run]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="bench-ws-") as tmp:
        logdir = Path(tmp)
        broker, bootstrap = start_broker([f"{TOPIC}:4"], CORE_REST, logdir / "broker.log")
        server, app_port = start_echo()
        try:
            for repeat in range(opts.repeats):
                for name in names:
                    run = measure(
                        name,
                        f"http://127.0.0.1:{app_port}",
                        bootstrap,
                        logdir,
                        opts.clients,
                        opts.round_trips,
                        opts.size,
                    )
                    runs[name].append(run)
                    print(
                        f"repeat {repeat + 1}: {name}: {run.rate:.0f} msg/s, "
                        f"{run.cpu_us:.0f} µs CPU/msg",
                        file=sys.stderr,
                    )
        finally:
            server.shutdown()  # type: ignore[attr-defined]
            stop(broker)
    base = runs["record, filtered out"]
    print(
        f"\n{opts.clients} sessions, {opts.round_trips} round trips each of {opts.size}-byte "
        f"text messages; medians of {opts.repeats} interleaved repeats\n"
    )
    print("| proxy | messages/s | proxy CPU µs/message | CPU vs filtered-out record |")
    print("| --- | ---: | ---: | ---: |")
    for name in names:
        rate = statistics.median(r.rate for r in runs[name])
        cpu = statistics.median(r.cpu_us for r in runs[name])
        ratio = statistics.median(
            r.cpu_us / b.cpu_us for r, b in zip(runs[name], base, strict=True) if b.cpu_us
        )
        print(f"| {name} | {rate:.0f} | {cpu:.0f} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
