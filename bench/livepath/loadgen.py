"""The live-path benchmark's load generator: open-loop, steady, keep-alive, one process per run.

`python bench/livepath/loadgen.py steady PORT CONNECTIONS RATE SECONDS` opens
CONNECTIONS keep-alive connections and sends RATE requests per second on each,
on its own schedule: connection c's k-th request is due at t0 + (c / CONNECTIONS
+ k) / RATE, so the requests of all connections are spread evenly over time,
never a burst of all of them at once. Latency is taken from the *due* time to
the last byte of the answer (open loop: a stall of the proxy delays the next
request on that connection, and that delay is counted, not hidden). One thread
per connection, blocking sockets, a pre-built request, `perf_counter_ns`, and
the timer slack set to 1 ns, so the generator wakes within a few microseconds
of each due time; how late it sent the requests it was free to send on time is
reported too (`late_us`), which is the generator's own overhead. It prints
`measuring` when the measured window starts (the harness reads the proxy's CPU
time then).
`download PORT COUNT PATH` fetches PATH on COUNT connections at once and
reports each one's time to first byte and total time. Prints one JSON object.
Standard library only: it runs with whatever Python runs the bench.
"""

from __future__ import annotations

import ctypes
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

#: What each steady request asks for (the app answers it with a small fixed body).
PATH = "/hello"
#: The line `steady` prints when its measured window starts, before the JSON line.
MARK = "measuring"
_PR_SET_TIMERSLACK = 29


def request_bytes(path: str, host: str = "bench.example") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: live-path-bench\r\n\r\n".encode()


def due_ns(t0: int, conn: int, connections: int, k: int, interval_ns: int) -> int:
    """When request `k` of connection `conn` is due: spread evenly across the connections."""
    return t0 + (conn * interval_ns) // connections + k * interval_ns


def content_length(head: bytes) -> int:
    """The Content-Length of a response head; ValueError when it has none (chunked, close)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    raise ValueError(f"response without Content-Length: {head[:200]!r}")


def _tight_timers() -> None:
    # Linux lets a sleeping thread wake up to 50 µs late by default (timer
    # slack); 1 ns makes time.sleep() wake within a few µs of the due time.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class _Conn:
    """One keep-alive connection that reads whole responses (Content-Length framed)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = self._connect()
        self.buf = bytearray()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def reconnect(self) -> None:
        self.sock.close()
        self.sock = self._connect()
        self.buf.clear()

    def exchange(self, request: bytes) -> bool:
        """Send `request`, read the whole answer; True when it was a 200."""
        self.sock.sendall(request)
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            buf += chunk
        head = bytes(buf[:end])
        total = end + 4 + content_length(head)
        while len(buf) < total:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server mid-body")
            buf += chunk
        del buf[:total]
        return head.startswith(b"HTTP/1.1 200")


@dataclass
class _Lane:
    """What one connection measured."""

    latencies_us: list[float] = field(default_factory=list)
    late_us: list[float] = field(default_factory=list)
    errors: int = 0
    reconnects: int = 0


def steady(
    port: int, connections: int, rate: float, seconds: float, warmup: float
) -> dict[str, Any]:
    """`connections` × `rate` req/s for `warmup` + `seconds`; the measured part's figures."""
    _tight_timers()
    request = request_bytes(PATH)
    conns = [_Conn(port) for _ in range(connections)]
    lanes = [_Lane() for _ in range(connections)]
    interval = int(1e9 / rate)
    t0 = time.perf_counter_ns() + 50_000_000
    measure_from = t0 + int(warmup * 1e9)
    end = measure_from + int(seconds * 1e9)

    def run(c: int) -> None:
        conn, lane = conns[c], lanes[c]
        free_at = 0  # when the previous answer arrived
        k = 0
        while (due := due_ns(t0, c, connections, k, interval)) < end:
            k += 1
            now = time.perf_counter_ns()
            if now < due:
                time.sleep((due - now) / 1e9)
            sent = time.perf_counter_ns()
            try:
                ok = conn.exchange(request)
            except (OSError, ValueError):
                ok = False
                lane.reconnects += 1
                try:
                    conn.reconnect()
                except OSError:
                    time.sleep(0.01)
            done = time.perf_counter_ns()
            if due >= measure_from:
                lane.latencies_us.append((done - due) / 1000)
                if free_at <= due:  # the generator alone decided when this one left
                    lane.late_us.append((sent - due) / 1000)
                if not ok:
                    lane.errors += 1
            free_at = done

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in range(connections)]
    for thread in threads:
        thread.start()
    # Tell the harness when the measured window starts (it reads the proxy's CPU time then).
    time.sleep(max(0.0, (measure_from - time.perf_counter_ns()) / 1e9))
    print(MARK, flush=True)
    for thread in threads:
        thread.join()
    for conn in conns:
        conn.sock.close()
    return {
        "latencies_us": [x for lane in lanes for x in lane.latencies_us],
        "late_us": [x for lane in lanes for x in lane.late_us],
        "errors": sum(lane.errors for lane in lanes),
        "reconnects": sum(lane.reconnects for lane in lanes),
    }


def download(port: int, count: int, path: str) -> dict[str, Any]:
    """`count` GETs of `path` at once, each read to the end: time to first byte and total, s."""
    request = request_bytes(path)
    results: list[dict[str, Any]] = [{} for _ in range(count)]
    start = threading.Barrier(count)

    def one(i: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        try:
            start.wait()
            t0 = time.perf_counter()
            sock.sendall(request)
            n = sock.recv_into(view)
            ttfb = time.perf_counter() - t0
            head = bytes(buf[:n])
            while b"\r\n\r\n" not in head:
                more = sock.recv(65536)
                if not more:
                    raise ConnectionError("closed before the response head")
                head += more
            end = head.index(b"\r\n\r\n") + 4
            want = content_length(head[:end])
            got = len(head) - end
            while got < want:
                n = sock.recv_into(view)
                if not n:
                    break
                got += n
            results[i] = {
                "ttfb_s": ttfb,
                "total_s": time.perf_counter() - t0,
                "bytes": got,
                "ok": got == want and head.startswith(b"HTTP/1.1 200"),
            }
        except (OSError, ValueError) as exc:
            results[i] = {"ok": False, "error": str(exc)}
        finally:
            sock.close()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"downloads": results}


def main(argv: list[str]) -> int:
    if len(argv) == 6 and argv[0] == "steady":
        port, conns, rate, seconds, warmup = argv[1:]
        out = steady(int(port), int(conns), float(rate), float(seconds), float(warmup))
    elif len(argv) == 4 and argv[0] == "download":
        out = download(int(argv[1]), int(argv[2]), argv[3])
    else:
        print(
            "usage: loadgen.py steady PORT CONNECTIONS RATE SECONDS WARMUP | "
            "download PORT COUNT PATH",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
