"""/healthz, /readyz and /metrics of the recorder and the worker, as real processes."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from tests.support import Kafka, Procs, free_port, wait_port
from trafficmirror.demo.apps import RecordingShadow, SampleApp

pytestmark = pytest.mark.e2e


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def eventually(port: int, path: str, status: int, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    last: tuple[int, str] = (0, "")
    while time.monotonic() < deadline:
        try:
            last = get(port, path)
        except OSError:
            last = (0, "not listening")
        if last[0] == status:
            return last[1]
        time.sleep(0.1)
    raise AssertionError(f"{path} on {port} answered {last}, wanted {status}")


def test_recorder_health_endpoints(kafka: Kafka, topic: str, procs: Procs) -> None:
    listen, metrics = free_port(), free_port()
    with SampleApp() as app:
        procs.start(
            "recorder",
            [
                "record",
                "-b",
                kafka.bootstrap_servers,
                "-t",
                topic,
                "--upstream",
                app.url,
                "--listen",
                f"127.0.0.1:{listen}",
                "--metrics-port",
                str(metrics),
            ],
        )
        wait_port(listen)
        eventually(metrics, "/healthz", 200)
        eventually(metrics, "/readyz", 200)
        urllib.request.urlopen(f"http://127.0.0.1:{listen}/x", timeout=5).read()
        body = eventually(metrics, "/metrics", 200)
        assert "trafficmirror_recorder_recorded_total" in body
        assert get(metrics, "/nope")[0] == 404


def test_worker_health_endpoints_ready_only_with_partitions(kafka: Kafka, procs: Procs) -> None:
    topic = kafka.new_topic(1, prefix="health")
    ports = [free_port(), free_port()]
    with RecordingShadow() as shadow:
        for index, port in enumerate(ports):
            procs.start(
                f"worker-{index}",
                [
                    "worker",
                    "--start-from",  # the records are produced first
                    "earliest",
                    "-b",
                    kafka.bootstrap_servers,
                    "-t",
                    topic,
                    "--group",
                    f"g-{topic}",
                    "--target",
                    shadow.url,
                    "--metrics-port",
                    str(port),
                ],
            )
        for port in ports:
            eventually(port, "/healthz", 200)
        # One partition, two workers: exactly one is ready, the other says why not.
        deadline = time.monotonic() + 30
        while True:
            answers = [get(port, "/readyz") for port in ports]
            if sorted(code for code, _ in answers) == [200, 503]:
                break
            assert time.monotonic() < deadline, answers
            time.sleep(0.2)
        idle = next(text for code, text in answers if code == 503)
        assert idle.strip()
        assert "trafficmirror_replayer" in get(ports[0], "/metrics")[1]
