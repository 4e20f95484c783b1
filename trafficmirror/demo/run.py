"""`trafficmirror demo`: the whole pipeline on one machine, checked end to end.

in-memory broker → sample app behind `trafficmirror record` → generated traffic
→ N `trafficmirror worker` processes in one group → sample shadow. Every
component is real: real sockets, real processes, the Kafka protocol.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import click
from confluent_kafka import Consumer, TopicPartition

from trafficmirror.demo.apps import RecordingShadow, SampleApp
from trafficmirror.demo.traffic import check_delivery, plan, send
from trafficmirror.plumbing.devbroker import MockCluster


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(what: str, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise click.ClickException(f"demo: timed out waiting for {what}")
        time.sleep(0.1)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _topic_size(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "trafficmirror-demo-probe"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
            for p in range(partitions)
        )
    finally:
        consumer.close()


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(  # noqa: S603 (our own CLI, fixed arguments)
            [sys.executable, "-m", "trafficmirror", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


def run_demo(requests: int = 200, workers: int = 2) -> int:
    """Run the demo; 0 only if every recorded exchange reached the shadow intact."""
    topic, partitions = "demo.traffic", 4
    logs = Path(tempfile.mkdtemp(prefix="trafficmirror-demo-"))
    say = click.echo
    procs: list[subprocess.Popen[bytes]] = []
    result = 1
    with MockCluster(brokers=1) as cluster, SampleApp() as app, RecordingShadow() as shadow:
        try:
            cluster.create_topic(topic, partitions)
            bootstrap = cluster.bootstrap_servers
            say(
                f"broker   in-memory mock cluster at {bootstrap}, "
                f"topic {topic} ({partitions} partitions)"
            )
            say(f"app      {app.url}    shadow {shadow.url}")
            port = _free_port()
            recorder = _spawn(
                [
                    "record",
                    "-b",
                    bootstrap,
                    "-t",
                    topic,
                    "--upstream",
                    app.url,
                    "--listen",
                    f"127.0.0.1:{port}",
                ],
                logs / "recorder.log",
            )
            procs.append(recorder)
            _wait("the recorder to listen", lambda: _listening(port), 30)
            say(f"recorder http://127.0.0.1:{port} → {app.url}")

            traffic = plan(requests, connections=6)
            started = time.monotonic()
            send("127.0.0.1", port, traffic)
            elapsed = time.monotonic() - started
            failed_live = [p for p in traffic if p.status is None or p.status >= 500]
            say(
                f"traffic  {len(traffic)} requests on 6 keep-alive connections in {elapsed:.2f}s, "
                f"{len(failed_live)} failed"
            )
            _wait(
                "the events to reach Kafka",
                lambda: _topic_size(bootstrap, topic, partitions) >= len(traffic),
                60,
            )
            recorded = _topic_size(bootstrap, topic, partitions)
            _stop(recorder)
            say(f"recorded {recorded} events in {topic}")

            target = shadow.url
            for index in range(workers):
                procs.append(
                    _spawn(
                        [
                            "worker",
                            "--start-from",  # the traffic is recorded first
                            "earliest",
                            "-b",
                            bootstrap,
                            "-t",
                            topic,
                            "--group",
                            "demo-replayers",
                            "--target",
                            target,
                            "--concurrency",
                            "16",
                            # The sample shadow shares no state: replay writes too.
                            "--methods",
                            "ALL",
                        ],
                        logs / f"worker-{index}.log",
                    )
                )
            say(f"replay   {workers} workers in group demo-replayers → {target}")
            _wait("the shadow to receive the replay", lambda: len(shadow.received) >= recorded, 90)
            time.sleep(0.5)  # anything extra (duplicates) would arrive now
            for proc in procs[1:]:
                _stop(proc)
            received = shadow.received
            problems = check_delivery(traffic, received)
            say(f"received {len(received)} requests at the shadow")
            if failed_live or recorded != len(traffic) or problems:
                for problem in problems[:20]:
                    say(f"  problem: {problem}", err=True)
                say(f"FAILED: see the process logs in {logs}", err=True)
                return result
            say(
                f"OK       all {len(traffic)} exchanges recorded and replayed intact "
                "(method, path, query, headers in order, body bytes, per-connection order)"
            )
            result = 0
            return result
        finally:
            for proc in procs:
                _stop(proc)
            if result == 0 and os.environ.get("TRAFFICMIRROR_DEMO_KEEP_LOGS") is None:
                for path in logs.iterdir():
                    path.unlink()
                logs.rmdir()
