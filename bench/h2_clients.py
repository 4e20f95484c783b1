"""Which HTTP/2 client the replayer sends with: CPU per request through the sender, one run.

The shadow of bench/replay.py (HTTP/1.1 and h2c in one process, pinned to the
other core) answers; this process sends the same small GET `--requests` times
through the replayer's `Sender` (`--concurrency` in flight, spread over 200
keys like recorded connections) with each candidate transport, on the
replayer's event loop (uvloop):

* `Http1Transport`, the replayer's HTTP/1.1 client (the reference);
* `Http2Transport`, the replayer's HTTP/2 client, on `jh2` (h2's fork with its
  HPACK coder in Rust), as shipped;
* the same client on `h2` (pure Python; mitmproxy's): replayer/sending/h2conn.py
  loaded with `jh2` replaced by `h2` in its source;
* httpx's `AsyncClient(http2=True)` (h2 under httpcore), wrapped as a transport
  the way a general-purpose client would be used.

Rounds are interleaved and repeated; the table gives the median requests/s and
CPU time of this process per request (min..max). docs/http2.md has the figures.

    python bench/h2_clients.py [--requests 20000] [--repeats 3] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from procs import free_port, start, stop, wait_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class HttpxTransport:
    """httpx's HTTP/2 client as a replayer transport (bench only)."""

    def __init__(self) -> None:
        import httpx

        self.client = httpx.AsyncClient(
            http2=True,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=30,
        )

    async def send(self, request: Any) -> Any:
        from replayer.models import Response

        headers = [(n, v) for n, v in request.headers if n.lower() not in ("connection", "host")]
        answer = await self.client.request(
            request.method, request.url, headers=headers, content=request.body
        )
        return Response(
            answer.status_code,
            tuple(answer.headers.items()),
            answer.content,
            http_version=answer.http_version,
        )

    async def aclose(self) -> None:
        await self.client.aclose()


def on_h2() -> Callable[[], Any]:
    """`Http2Transport` whose connections run replayer/sending/h2conn.py on h2, not jh2."""
    import types

    from replayer.sending.http2 import Http2Transport

    source = (ROOT / "replayer" / "sending" / "h2conn.py").read_text()
    module = types.ModuleType("h2conn_on_h2")
    exec(compile(source.replace("jh2", "h2"), "h2conn_on_h2", "exec"), module.__dict__)  # noqa: S102

    class OnH2(Http2Transport):
        def _protocol(self) -> Any:
            return module.H2Connection(self._max_body, self.budget)

    return OnH2


def candidates() -> dict[str, Callable[[], Any]]:
    from replayer.sending.http1 import Http1Transport
    from replayer.sending.http2 import Http2Transport

    return {
        "Http1Transport (HTTP/1.1, reference)": lambda: Http1Transport(limit=64),
        "Http2Transport on jh2 (shipped)": Http2Transport,
        "Http2Transport on h2": on_h2(),
        "httpx AsyncClient(http2=True)": HttpxTransport,
    }


async def one_round(
    make: Callable[[], Any], target_url: str, count: int, concurrency: int, http2: bool
) -> tuple[float, float, str]:
    from replayer.models import OutgoingRequest, Target
    from replayer.sending.sender import Sender

    target = Target.parse(target_url)
    headers = (
        ("Host", target.host_port),
        ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) bench/1.0"),
        ("Accept", "application/json"),
        ("Accept-Encoding", "gzip, deflate"),
        ("Accept-Language", "en-US,en;q=0.9"),
        ("Cookie", "session=3f9a1c0e7d; theme=dark"),
    )
    version = "HTTP/2.0" if http2 else "HTTP/1.1"
    sender = Sender(make(), concurrency=concurrency, timeout=30)
    # Warm-up: the connection(s) open outside the measurement.
    await asyncio.gather(
        *[
            sender.submit(OutgoingRequest("GET", target, "/warm", headers, b"", "w", version), i)
            for i in range(concurrency)
        ]
    )
    cpu0, wall0 = time.process_time(), time.monotonic()
    pending = []
    for i in range(count):
        request = OutgoingRequest(
            "GET",
            target,
            f"/api/items/{i % 5000}?fields=name,price",
            (*headers, ("X-Trafficmirror-Replay", f"b-{i}")),
            b"",
            f"b-{i}",
            version,
        )
        pending.append(sender.submit(request, i % 200))
        if len(pending) >= 4 * concurrency:
            await asyncio.gather(*pending)
            pending.clear()
    outcomes = await asyncio.gather(*pending)
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    errors = [o.error for o in outcomes if o.error]
    await sender.aclose()
    return count / wall, cpu / count * 1e6, errors[0] if errors else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    from replayer.eventloop import run

    ncpu = os.cpu_count() or 1
    if ncpu >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    logdir = Path(tempfile.mkdtemp(prefix="tm-bench-h2-"))
    port = free_port()
    shadow = start(
        [sys.executable, str(ROOT / "bench" / "replay.py"), "--_shadow", str(port)],
        set(range(1, ncpu)) if ncpu >= 2 else None,
        logdir / "shadow.log",
    )
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}"
        names = candidates()
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        for rep in range(args.repeats):
            for name, make in names.items():
                http2 = "HTTP/1.1" not in name
                rps, cpu, error = run(one_round(make, url, args.requests, args.concurrency, http2))
                results[name].append((rps, cpu))
                note = f"  first error: {error}" if error else ""
                print(f"  run {rep + 1} {name:40} {rps:8.0f} req/s {cpu:6.1f} us CPU/req{note}")
        print()
        print("| client | requests/s, median (min..max) | CPU per request, median (min..max) |")
        print("| --- | ---: | ---: |")
        for name, values in results.items():
            rps = [v[0] for v in values]
            cpu = [v[1] for v in values]
            print(
                f"| {name} | {statistics.median(rps):.0f} ({min(rps):.0f}..{max(rps):.0f}) | "
                f"{statistics.median(cpu):.0f} us ({min(cpu):.0f}..{max(cpu):.0f}) |"
            )
        print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        stop(shadow)
    return 0


if __name__ == "__main__":
    sys.exit(main())
