"""Generated client traffic for the demo and the end-to-end tests, and its check.

`plan()` makes a reproducible mix of the requests a real API sees: GETs with
query strings (repeated keys, escapes), JSON POSTs, binary uploads, repeated
and mixed-case headers, spread over several keep-alive connections.
`send()` plays the plan through a real HTTP/1.1 client, one thread per
connection, controlling every header byte so the exact request is known.
`check_delivery()` compares what the shadow received with what was sent.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from trafficmirror.demo.apps import Received

#: Marks each generated request so the check can match it at the shadow.
SEQ_HEADER = "X-Demo-Seq"
REPLAY_HEADER = "X-Trafficmirror-Replay"
#: Headers a faithful replay may legitimately change or add.
_REWRITTEN = {"host", REPLAY_HEADER.lower(), "connection", "keep-alive"}


@dataclass
class Planned:
    """One request to send: exact header list in order, exact body."""

    seq: int
    conn: int
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    status: int | None = field(default=None)


def plan(requests: int, connections: int = 4, seed: int = 7) -> list[Planned]:
    """A reproducible mix of `requests` requests over `connections` connections."""
    rng = random.Random(seed)  # noqa: S311 (test data, not security)
    out: list[Planned] = []
    for seq in range(requests):
        conn = seq % connections
        base = [("Host", "shop.example.com"), (SEQ_HEADER, str(seq)), ("User-Agent", "tm-demo/1")]
        kind = seq % 5
        if kind == 0:
            term = rng.choice(["shoes", "red hat", "caf\u00e9", "a&b=c"])
            from urllib.parse import quote

            path = f"/search?q={quote(term)}&page={rng.randint(1, 9)}&tag=a&tag=b"
            out.append(Planned(seq, conn, "GET", path, [*base, ("Accept", "application/json")]))
        elif kind == 1:
            body = json.dumps(
                {"sku": f"SKU-{rng.randint(1, 999)}", "qty": rng.randint(1, 5), "note": "\u2713 ok"}
            ).encode()
            headers = [
                *base,
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
            ]
            out.append(Planned(seq, conn, "POST", "/api/orders", headers, body))
        elif kind == 2:
            body = rng.randbytes(rng.randint(1, 48 * 1024))
            headers = [
                *base,
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(len(body))),
            ]
            out.append(Planned(seq, conn, "PUT", f"/upload/{seq}.bin", headers, body))
        elif kind == 3:
            headers = [
                *base,
                ("X-Tag", "alpha"),
                ("x-tag", "beta"),
                ("X-Tag", "gamma, delta"),
                ("Accept-Language", "de-CH, en;q=0.5"),
            ]
            out.append(Planned(seq, conn, "GET", f"/users/{rng.randint(1, 99)}/orders", headers))
        else:
            out.append(Planned(seq, conn, "DELETE", f"/api/orders/{seq}?soft=1", list(base)))
    return out


def send(host: str, port: int, requests: Sequence[Planned], timeout: float = 30.0) -> list[Planned]:
    """Send the plan to host:port, each connection's requests in order on one socket."""
    by_conn: dict[int, list[Planned]] = defaultdict(list)
    for item in requests:
        by_conn[item.conn].append(item)
    errors: list[BaseException] = []

    def run(items: list[Planned]) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            for item in items:
                conn.putrequest(item.method, item.path, skip_host=True, skip_accept_encoding=True)
                for name, value in item.headers:
                    conn.putheader(name, value.encode("utf-8"))
                conn.endheaders(item.body or None)
                response = conn.getresponse()
                response.read()
                item.status = response.status
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(items,)) for items in by_conn.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return list(requests)


def _comparable(
    headers: Sequence[tuple[bytes, bytes]] | Sequence[tuple[str, str]],
) -> list[tuple[str, str]]:
    out = []
    for name, value in headers:
        n = name.decode("latin-1") if isinstance(name, bytes) else name
        v = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if n.lower() not in _REWRITTEN:
            out.append((n, v))
    return out


def check_delivery(sent: Sequence[Planned], received: Sequence[Received]) -> list[str]:
    """Problems found comparing the shadow's requests with what the client sent.

    Every sent request must arrive exactly once with the same method, path with
    query, headers (names, values, order, duplicates; Host and the replay marker
    excepted) and body bytes; it must carry the replay marker; and each
    connection's requests must arrive in their original order.
    """
    problems: list[str] = []
    arrivals: dict[int, list[Received]] = defaultdict(list)
    for item in received:
        seq = item.header(SEQ_HEADER)
        if seq is None:
            problems.append(f"shadow got a request without {SEQ_HEADER}: {item.method} {item.path}")
            continue
        arrivals[int(seq)].append(item)
    for want in sent:
        got = arrivals.get(want.seq, [])
        if len(got) != 1:
            problems.append(f"request {want.seq} arrived {len(got)} times")
            continue
        item = got[0]
        if item.method != want.method:
            problems.append(f"request {want.seq}: method {item.method} != {want.method}")
        if item.path != want.path:
            problems.append(f"request {want.seq}: path {item.path!r} != {want.path!r}")
        if _comparable(item.headers) != _comparable(want.headers):
            got_headers, want_headers = _comparable(item.headers), _comparable(want.headers)
            problems.append(f"request {want.seq}: headers {got_headers} != {want_headers}")
        if item.body != want.body:
            problems.append(
                f"request {want.seq}: body differs ({len(item.body)} vs {len(want.body)} bytes)"
            )
        if not item.header(REPLAY_HEADER):
            problems.append(f"request {want.seq}: no {REPLAY_HEADER} header")
    extra = set(arrivals) - {p.seq for p in sent}
    if extra:
        problems.append(f"shadow got {len(extra)} requests that were never sent")
    order: dict[int, list[tuple[int, int]]] = defaultdict(list)
    conn_of = {p.seq: p.conn for p in sent}
    for index, item in enumerate(received):
        number = int(item.header(SEQ_HEADER) or -1)
        if number in conn_of:
            order[conn_of[number]].append((index, number))
    for conn, seen in order.items():
        seqs = [seq for _, seq in sorted(seen)]
        if seqs != sorted(seqs):
            problems.append(f"connection {conn}: requests arrived out of order")
    return problems
