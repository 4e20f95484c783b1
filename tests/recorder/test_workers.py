"""`record --workers N` as real processes: one port, N recorders, one summary, stopped together.

Many client connections go through `record --workers 2` to a real app; the
events read back from the broker show both workers' recorder ids and add up
to the requests sent, as do the one summary and the one /metrics endpoint. A
worker killed with SIGKILL is reported and fails the command; bad --workers
values and a taken port are one line each. The unit tests at the end check
the pieces the supervisor is made of: the shared-port event loop, the port
reservation and the adding up of counters.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import os
import re
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from recorder import reuseport
from recorder.workers import add_counts, exit_reason, summary_line
from tests.recorder.helpers import read_events
from tests.support import Kafka, Proc, Procs, free_port, run_cli
from trafficmirror.demo.apps import RecordingShadow
from trafficmirror.plumbing.errors import TrafficMirrorError

SUMMARY = re.compile(
    r"recorder summary: workers=(\d+) seen=(\d+) recorded=(\d+) dropped=(\d+) failed=(\d+)"
)


@pytest.fixture
def app() -> Iterator[RecordingShadow]:
    with RecordingShadow() as server:
        yield server


def start_workers(
    procs: Procs, kafka: Kafka, topic: str, upstream: str, *extra: str
) -> tuple[Proc, int]:
    """`record --workers 2`, returned once both workers listen."""
    port = free_port()
    proc = procs.start(
        "record",
        [
            "record",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            topic,
            "--upstream",
            upstream,
            "--listen",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--recorder-id",
            "sidecar",
            *extra,
        ],
    )
    deadline = time.monotonic() + 60
    while "2 workers listening" not in proc.stderr:
        assert proc.popen.poll() is None, f"record exited:\n{proc.stderr}"
        assert time.monotonic() < deadline, f"workers did not start:\n{proc.stderr}"
        time.sleep(0.1)
    return proc, port


def children(pid: int) -> list[int]:
    """The processes `pid` started (Linux /proc)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(p) for p in f.read().split()]
    return found


def gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie waiting for its reaper counts)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def send(port: int, conn: int, requests: int) -> list[int]:
    """`requests` requests on one keep-alive connection; their statuses."""
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    statuses = []
    try:
        for i in range(requests):
            client.request("GET", f"/c{conn}/r{i}", headers={"X-Conn": str(conn)})
            response = client.getresponse()
            response.read()
            statuses.append(response.status)
    finally:
        client.close()
    return statuses


def get(port: int, path: str) -> tuple[int, str]:
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        client.request("GET", path)
        response = client.getresponse()
        return response.status, response.read().decode()
    finally:
        client.close()


def metric(port: int, name: str) -> float:
    _, text = get(port, "/metrics")
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    return sum(values)


@pytest.mark.e2e
def test_two_workers_share_the_port_and_record_every_request(
    kafka: Kafka, procs: Procs, app: RecordingShadow
) -> None:
    topic = kafka.new_topic(4)
    metrics_port = free_port()
    proc, port = start_workers(procs, kafka, topic, app.url, "--metrics-port", str(metrics_port))
    workers = children(proc.popen.pid)
    assert len(workers) == 2
    # Ready once both workers are (listening, Kafka reached); alive meanwhile.
    deadline = time.monotonic() + 15
    while get(metrics_port, "/readyz")[0] != 200:
        assert time.monotonic() < deadline, get(metrics_port, "/readyz")
        time.sleep(0.1)
    assert get(metrics_port, "/healthz") == (200, "ok\n")

    connections, per_connection = 40, 5
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda c: send(port, c, per_connection), range(connections)))
    statuses = [s for result in results for s in result]
    assert statuses == [200] * connections * per_connection
    total = len(statuses)

    # One /metrics for both: the counters are summed over the workers.
    deadline = time.monotonic() + 15
    while metric(metrics_port, "trafficmirror_recorder_recorded_total") < total:
        assert time.monotonic() < deadline, "the metrics never showed every event"
        time.sleep(0.2)
    assert metric(metrics_port, "trafficmirror_recorder_recorded_total") == total
    # Gauges are per worker, labelled with its pid.
    _, text = get(metrics_port, "/metrics")
    assert {f'trafficmirror_recorder_queue_messages{{pid="{pid}"}}' for pid in workers} <= {
        line.split()[0] for line in text.splitlines()
    }

    # SIGTERM to the supervisor stops both workers, with one summary for both.
    assert proc.stop(timeout=60) == 0, proc.stderr
    assert all(gone(pid) for pid in workers)
    found = SUMMARY.findall(proc.stderr)
    assert len(found) == 1, proc.stderr
    # seen = recorded + dropped + failed, over both workers.
    assert tuple(int(n) for n in found[0]) == (2, total, total, 0, 0)
    assert proc.stderr.count("recorder summary") == 1
    assert "Traceback" not in proc.stderr

    # The topic holds every request once; the kernel gave both workers some.
    events = read_events(kafka.bootstrap_servers, topic, total)
    assert len(events) == total
    ids = Counter(event["recorder"]["recorder_id"] for _, event in events)
    assert set(ids) == {"sidecar/w1", "sidecar/w2"}, ids
    paths = sorted(event["path"] for _, event in events)
    assert paths == sorted(
        f"/c{c}/r{i}".encode() for c in range(connections) for i in range(per_connection)
    )
    # A connection is served by one worker from its first request to its last.
    by_conn: dict[bytes, set[str]] = {}
    for _, event in events:
        conn = event["path"].split(b"/")[1]
        by_conn.setdefault(conn, set()).add(event["recorder"]["recorder_id"])
    assert all(len(ids) == 1 for ids in by_conn.values())


@pytest.mark.e2e
def test_a_killed_worker_is_reported_and_stops_the_others(
    kafka: Kafka, procs: Procs, app: RecordingShadow
) -> None:
    topic = kafka.new_topic(1)
    proc, port = start_workers(procs, kafka, topic, app.url)
    first, second = children(proc.popen.pid)
    assert send(port, 0, 3) == [200] * 3

    os.kill(first, signal.SIGKILL)
    assert proc.wait(timeout=60) == 1
    assert gone(second)
    last = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"trafficmirror: error: worker w[12] \(pid {first}\) killed by SIGKILL while serving",
        last,
    ), proc.stderr
    assert "Traceback" not in proc.stderr
    # The survivor's counts are still summed, and the summary says whose are missing.
    assert "not counted: worker w" in proc.stderr


@pytest.mark.e2e
def test_workers_stop_when_the_supervisor_is_killed(
    kafka: Kafka, procs: Procs, app: RecordingShadow
) -> None:
    topic = kafka.new_topic(1)
    proc, port = start_workers(procs, kafka, topic, app.url)
    workers = children(proc.popen.pid)
    assert send(port, 0, 2) == [200, 200]
    proc.signal(signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not all(gone(pid) for pid in workers):
        assert time.monotonic() < deadline, "workers outlived their supervisor"
        time.sleep(0.1)
    # They stopped as on SIGTERM: what they had recorded reached Kafka.
    assert len(read_events(kafka.bootstrap_servers, topic, 2)) == 2


@pytest.mark.e2e
def test_sigint_reaches_every_worker(kafka: Kafka, procs: Procs, app: RecordingShadow) -> None:
    topic = kafka.new_topic(1)
    proc, port = start_workers(procs, kafka, topic, app.url)
    workers = children(proc.popen.pid)
    assert send(port, 0, 2) == [200, 200]
    proc.signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0, proc.stderr
    assert all(gone(pid) for pid in workers)
    [found] = SUMMARY.findall(proc.stderr)
    assert tuple(int(n) for n in found) == (2, 2, 2, 0, 0)


@pytest.mark.parametrize("workers", ["0", "-1", "two"])
def test_bad_worker_count_is_one_line(kafka: Kafka, workers: str) -> None:
    result = run_cli(
        ["record", "-b", kafka.bootstrap_servers, "-t", "t", "-u", "http://127.0.0.1:9"]
        + ["--workers", workers],
        timeout=30,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("trafficmirror: error:") and "--workers" in line


@pytest.mark.parametrize("reuse_port", [False, True])
def test_a_taken_port_is_one_line(kafka: Kafka, reuse_port: bool) -> None:
    # Taken by an ordinary socket, or by another program's SO_REUSEPORT socket:
    # either way the port is refused, never shared.
    with socket.socket() as taken:
        if reuse_port:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            ["record", "-b", kafka.bootstrap_servers, "-t", "t", "-u", "http://127.0.0.1:9"]
            + ["--listen", f"127.0.0.1:{port}", "--workers", "2"],
            timeout=30,
        )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert (
        line == f"trafficmirror: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_a_worker_that_cannot_start_is_one_line(kafka: Kafka, tmp_path: Path) -> None:
    # The CLI checks that the file exists; mitmproxy, in each worker, reads it.
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    result = run_cli(
        ["record", "-b", kafka.bootstrap_servers, "-t", "t", "-u", "http://127.0.0.1:9"]
        + ["--tls-cert", str(bad), "--listen", f"127.0.0.1:{free_port()}", "--workers", "2"],
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("trafficmirror: error: Invalid certificate format for"), last
    assert result.stderr.count("trafficmirror: error:") == 1
    assert "Traceback" not in result.stderr


# -- the pieces ---------------------------------------------------------------


def test_reuse_port_loops_share_a_reserved_port() -> None:
    reservation = reuseport.reserve("127.0.0.1", 0)
    port = reservation.getsockname()[1]
    loops = [reuseport.ReusePortLoop(port) for _ in range(2)]
    try:
        servers = [
            loop.run_until_complete(loop.create_server(asyncio.Protocol, "127.0.0.1", port))
            for loop in loops
        ]
        # An ordinary bind cannot take it while they hold it.
        with pytest.raises(OSError):
            socket.create_server(("127.0.0.1", port))
        with pytest.raises(TrafficMirrorError, match="cannot listen on"):
            reuseport.reserve("127.0.0.1", port)
        for loop, server in zip(loops, servers, strict=True):
            server.close()
            loop.run_until_complete(server.wait_closed())
        # Other ports are bound as asyncio binds them, without SO_REUSEPORT.
        other = loops[0].run_until_complete(
            loops[0].create_server(asyncio.Protocol, "127.0.0.1", 0)
        )
        [sock] = other.sockets
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
        other.close()
    finally:
        for loop in loops:
            loop.close()
        reservation.close()


def test_counts_add_up_over_workers() -> None:
    from recorder.accounting import Counts
    from recorder.workers import Worker

    def worker(name: str, counts: Counts | None) -> Worker:
        item = Worker(name, popen=None, fd=-1)  # type: ignore[arg-type]
        item.counts = dataclasses.asdict(counts) if counts is not None else None
        return item

    one = Counts(seen=9, delivered=5, queue_full=1, convert_failed=3, filtered=3)
    two = Counts(seen=10, delivered=7, undelivered=2, delivery_failed=1, cut_off=1)
    counts = add_counts([worker("w1", one), worker("w2", two), worker("w3", None)])
    assert counts == one + two
    assert (counts.seen, counts.recorded, counts.dropped, counts.failed) == (19, 12, 3, 4)
    assert counts.balanced
    line = summary_line(counts, 3, ["w3"])
    assert line.startswith("trafficmirror recorder summary: workers=3 seen=19 recorded=12 ")
    assert "dropped=3 failed=4 " in line and "filtered=3 cut_off=1" in line
    assert line.endswith("; not counted: worker w3 (died)")
    assert exit_reason(-9) == "killed by SIGKILL" and exit_reason(3) == "exit code 3"


@pytest.mark.e2e
def test_sigterm_under_load_through_two_workers(kafka: Kafka, procs: Procs) -> None:
    # The single recorder's test (tests/recorder/test_shutdown.py), through two
    # workers: every answered request is recorded, one is cut off, and the one
    # summary's seen = recorded + dropped + failed holds for the sum.
    from tests.recorder.test_shutdown import SlowApp, check_topic_and_summary, load_then_signal

    topic = kafka.new_topic(4)
    with SlowApp() as app:
        proc, port = start_workers(procs, kafka, topic, app.url, "--drain-timeout", "3")
        clients, short, long, stopped = load_then_signal(
            port, app, lambda: proc.signal(signal.SIGTERM), lambda: proc.wait(40)
        )
    assert 3.0 <= stopped < 15, stopped
    check_topic_and_summary(kafka, topic, proc.stderr, clients, short, long, stopped)
    assert proc.stderr.count("1 unfinished at the end") == 1


@pytest.mark.e2e
def test_sse_streams_through_two_workers(kafka: Kafka, procs: Procs) -> None:
    from tests.recorder.test_streaming import (
        SSE_EVENTS,
        SSE_EVERY,
        StreamingApp,
        in_thread,
        sse_event,
        sse_http1,
    )

    topic = kafka.new_topic(2)
    with StreamingApp() as app:
        proc, port = start_workers(procs, kafka, topic, app.url)
        # Four streams at once, spread over the workers by the kernel.
        threads = [in_thread(sse_http1, port) for _ in range(4)]
        for thread, _ in threads:
            thread.join(SSE_EVENTS * SSE_EVERY + 20)
        for _, result in threads:
            [reads] = result
            # The app sends the first event at once; buffered, it would come after 10 s.
            first = next(at for at, data in reads if b"data: tick 0" in data)
            assert first < 0.5, reads[:3]
            received = b"".join(data for _, data in reads)
            assert all(sse_event(i) in received for i in range(SSE_EVENTS))
        assert proc.stop(timeout=60) == 0, proc.stderr
    [found] = SUMMARY.findall(proc.stderr)
    assert tuple(int(n) for n in found) == (2, 4, 4, 0, 0)
