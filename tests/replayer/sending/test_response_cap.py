"""A shadow answering 1 GiB: `replay range` keeps the cap, its memory stays bounded.

The body is generated as it is sent (a 1 MiB block, 1,024 times), never stored.
The replayer's peak RSS is measured by a small wrapper process, from
`getrusage(RUSAGE_CHILDREN)` once `replay range` has exited (the VmHWM of that
one child). Figures are printed; run with `-s` to see them.
"""

from __future__ import annotations

import hashlib
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.replayer.events import make_event, produce_events
from tests.replayer.sending.test_guardrails import results
from tests.support import Kafka
from trafficmirror.plumbing.kafka import results_topic

pytestmark = pytest.mark.e2e

BLOCK = bytes(range(256)) * 4096  # 1 MiB
BLOCKS = 1024  # 1 GiB in all
#: What the recorder kept of production's (identical) body.
RECORDED = 256 * 1024
#: Generous: the replayer holds one 4 MiB cap of it, not the gigabyte.
RSS_BOUND_MIB = 300

# The wrapper: run the command, report the peak RSS (KiB) of that child on stderr.
PEAK = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(f'peak-rss-kib {peak}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            if head.split(b" ", 2)[1] == b"/big":
                sock.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % (BLOCKS * len(BLOCK))
                )
                view = memoryview(BLOCK)
                for _ in range(BLOCKS):
                    sock.sendall(view)
            else:
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")


@contextmanager
def big_shadow() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_1_gib_answer_is_capped_hashed_flagged_and_memory_stays_bounded(kafka: Kafka) -> None:
    topic = kafka.new_topic(1)
    kafka.create_topic(results_topic(topic), 1)
    big = make_event(path="/big", exchange_id="big", response_body=BLOCK[:RECORDED])
    message = big["response"]["message"]
    message["body_truncated"], message["body_length"] = True, BLOCKS * len(BLOCK)
    produce_events(
        kafka.bootstrap_servers, topic, [big, make_event(path="/small", exchange_id="small")]
    )
    with big_shadow() as url:
        started = time.monotonic()
        command = [sys.executable, "-m", "trafficmirror", "replay", "range"]
        args = ["-b", kafka.bootstrap_servers, "-t", topic, "--start-offset", "0"]
        done = subprocess.run(
            [sys.executable, "-c", PEAK, *command, *args, "--target", url, "--speed", "max"],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        took = time.monotonic() - started
    peak_mib = int(done.stderr.rsplit("peak-rss-kib ", 1)[1].split()[0]) / 1024
    print(f"\nreplay range of a 1 GiB answer: {took:.1f}s, peak RSS {peak_mib:.0f} MiB")
    assert done.returncode == 0, done.stderr
    assert peak_mib < RSS_BOUND_MIB
    assert "shadow bodies truncated 1 (over --max-response-bytes)" in done.stdout
    found = {r["id"]: r for r in results(kafka, topic)}
    whole = hashlib.sha256()
    for _ in range(BLOCKS):
        whole.update(BLOCK)
    r = found["big"]
    assert (r["shadow_body_truncated"], r["shadow_body_length"]) == (True, BLOCKS * len(BLOCK))
    assert r["shadow_body_sha256"] == whole.hexdigest()
    # Compared on the bytes kept and the whole length: the same as production's.
    assert r["outcome"] == "match", r["differences"]
    small = found["small"]
    assert (small["shadow_body_truncated"], small["shadow_body_length"]) == (False, 2)
    assert small["shadow_body_sha256"] is None
