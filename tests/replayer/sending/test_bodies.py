"""Response bodies past the cap: kept, counted, hashed; the budget across responses."""

from __future__ import annotations

import asyncio
import hashlib

from replayer.models import Outcome
from replayer.sending.bodies import BodyBudget, BodyCollector
from replayer.sending.http1 import Http1Transport
from replayer.sending.sender import Sender
from tests.replayer.sending.test_http1 import Scripted, get, ok


def test_a_body_under_the_cap_is_kept_whole() -> None:
    collector = BodyCollector(10)
    for part in (b"abc", b"", b"defg"):
        collector.feed(part)
    got = collector.result()
    assert (got.body, got.length, got.truncated, got.sha256) == (b"abcdefg", 7, False, None)


def test_past_the_cap_the_rest_is_counted_and_hashed() -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes
    collector = BodyCollector(1000)
    for i in range(0, len(data), 333):
        collector.feed(data[i : i + 333])
    got = collector.result()
    assert got.body == data[:1000]
    assert got.length == len(data) and got.truncated
    assert got.sha256 == hashlib.sha256(data).hexdigest()


def test_the_budget_bounds_what_all_bodies_keep_and_comes_back() -> None:
    budget = BodyBudget(1500)
    first, second = BodyCollector(1000, budget), BodyCollector(1000, budget)
    first.feed(b"a" * 1200)  # keeps its cap
    second.feed(b"b" * 800)  # finds 500 left
    assert budget.available == 0
    a, b = first.result(), second.result()
    assert (len(a.body), a.truncated, a.length) == (1000, True, 1200)
    assert (len(b.body), b.truncated, b.length) == (500, True, 800)
    assert b.sha256 == hashlib.sha256(b"b" * 800).hexdigest()
    assert budget.available == 1500  # given back once complete
    third = BodyCollector(1000, budget)
    third.feed(b"c" * 100)
    third.release()  # a failed response gives it back too
    assert budget.available == 1500


def chunked(body: bytes, size: int) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    ]
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(parts) + b"0\r\n\r\n"


def test_the_transport_keeps_the_cap_of_each_framing_and_says_so() -> None:
    big = bytes(range(256)) * 100  # 25,600 bytes

    async def until_close(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 200 OK\r\n\r\n" + big)
        await writer.drain()
        writer.close()

    async def main() -> list[Outcome]:
        script = Scripted([ok(big), chunked(big, 3000), ok(b"small"), until_close])
        server = await script.start()
        async with server:
            sender = Sender(Http1Transport(max_body=4096), timeout=5)
            outcomes = [await sender.submit(get(script.port, f"/{n}"), "conn") for n in range(4)]
            await sender.aclose()
        return outcomes

    outcomes = asyncio.run(main())
    responses = [o.response for o in outcomes]
    assert all(r is not None for r in responses), [o.error for o in outcomes]
    digest = hashlib.sha256(big).hexdigest()
    for n in (0, 1, 3):
        r = responses[n]
        assert r is not None
        assert (r.body, r.body_truncated, r.body_length, r.body_sha256) == (
            big[:4096],
            True,
            len(big),
            digest,
        ), n
    small = responses[2]
    assert small is not None and (small.body, small.body_truncated) == (b"small", False)
    assert small.body_length is None and small.body_sha256 is None
