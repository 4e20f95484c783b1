"""Sender: per-key order, the concurrency bound, errors as outcomes, exact bytes on the wire."""

from __future__ import annotations

import asyncio
import importlib.util
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any

import pytest

from replayer import eventloop
from replayer.models import Outcome, OutgoingRequest, Response, Target
from replayer.sending.http1 import Http1Transport
from replayer.sending.request import REPLAY_HEADER, build_request
from replayer.sending.sender import MockTransport, Sender
from tests.replayer.events import make_event
from trafficmirror.demo.apps import RecordingShadow

TARGET = Target.parse("http://127.0.0.1:9")


#: The loops a replay runs on (`replayer.eventloop`): the timeouts must work on both.
LOOPS = [
    "asyncio",
    pytest.param(
        "uvloop",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"
        ),
    ),
]


#: uvloop's `loop.time()` resolution.
CLOCK_STEP = 0.001


def run_on(monkeypatch: pytest.MonkeyPatch, loop: str, main: Coroutine[Any, Any, None]) -> None:
    """Run `main` the way a replay does (`replayer.eventloop.run`), on `loop`."""
    monkeypatch.setenv(eventloop.ENV, loop)
    eventloop.run(main)


def request(path: str, exchange_id: str = "x") -> OutgoingRequest:
    return OutgoingRequest("GET", TARGET, path, (("Host", TARGET.host_port),), b"", exchange_id)


def test_same_key_requests_go_one_after_another_in_order() -> None:
    async def main() -> None:
        log: list[tuple[str, str]] = []
        running: dict[str, int] = defaultdict(int)
        overlap: list[str] = []

        async def handler(req: OutgoingRequest) -> Response:
            key = req.path.split("/")[1]
            running[key] += 1
            if running[key] > 1:
                overlap.append(key)
            log.append(("start", req.path))
            # Later requests are faster: without ordering they would overtake.
            await asyncio.sleep(0.02 / (1 + int(req.path.split("/")[2])))
            running[key] -= 1
            return Response(200)

        sender = Sender(MockTransport(handler), concurrency=8)
        futures = [
            sender.submit(request(f"/{key}/{n}"), key.encode())
            for n in range(5)
            for key in ("a", "b", "c")
        ]
        outcomes = await asyncio.gather(*futures)
        assert all(o.ok for o in outcomes)
        assert overlap == []
        for key in ("a", "b", "c"):
            order = [p for kind, p in log if p.startswith(f"/{key}/")]
            assert order == [f"/{key}/{n}" for n in range(5)]
        assert sender.in_flight == 0
        await sender.aclose()

    asyncio.run(main())


def test_different_keys_run_concurrently_up_to_the_bound() -> None:
    async def main() -> None:
        running = 0
        peak = 0

        async def handler(req: OutgoingRequest) -> Response:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1
            return Response(204)

        sender = Sender(MockTransport(handler), concurrency=4)
        futures = [sender.submit(request(f"/{n}"), f"k{n}".encode()) for n in range(40)]
        assert sender.in_flight == 40
        await asyncio.gather(*futures)
        assert peak == 4
        # No key: no ordering, still bounded.
        futures = [sender.submit(request(f"/{n}"), None) for n in range(20)]
        await asyncio.gather(*futures)
        assert peak == 4
        await sender.aclose()

    asyncio.run(main())


def test_queued_same_key_requests_do_not_hold_slots() -> None:
    """One busy connection with a long queue must not starve the others."""

    async def main() -> None:
        order: list[str] = []

        async def handler(req: OutgoingRequest) -> Response:
            order.append(req.path)
            await asyncio.sleep(0.005)
            return Response(200)

        sender = Sender(MockTransport(handler), concurrency=2)
        busy = [sender.submit(request(f"/busy/{n}"), b"busy") for n in range(10)]
        other = sender.submit(request("/other"), b"other")
        await other
        assert order.index("/other") < 3
        await asyncio.gather(*busy)
        await sender.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("loop", LOOPS)
def test_errors_and_timeouts_become_outcomes_and_the_chain_goes_on(
    monkeypatch: pytest.MonkeyPatch, loop: str
) -> None:
    async def main() -> None:
        async def handler(req: OutgoingRequest) -> Response:
            if req.path == "/boom":
                raise ConnectionRefusedError(111, "Connection refused")
            if req.path == "/slow":
                await asyncio.sleep(5)
            return Response(200)

        sender = Sender(MockTransport(handler), concurrency=2, timeout=0.05)
        results: list[Outcome] = await asyncio.gather(
            sender.submit(request("/boom"), b"k"),
            sender.submit(request("/slow"), b"k"),
            sender.submit(request("/fine"), b"k"),
        )
        boom, slow, fine = results
        assert not boom.ok and "Connection refused" in (boom.error or "")
        assert not slow.ok and slow.error == "timeout after 0.05s"
        assert fine.ok and fine.response == Response(200)
        assert slow.latency >= 0.05
        await sender.aclose()

    run_on(monkeypatch, loop, main())


@pytest.mark.parametrize("loop", LOOPS)
def test_each_request_times_out_on_its_own_deadline_and_the_workers_go_on(
    monkeypatch: pytest.MonkeyPatch, loop: str
) -> None:
    """Staggered slow requests time out `timeout` after their own start, not together.

    On uvloop too: its `call_at` for a time already past (the timer set again while
    an expired request is still being cancelled) returns a handle without `when()`.
    """

    async def main() -> None:
        async def handler(req: OutgoingRequest) -> Response:
            if req.path.startswith("/slow"):
                await asyncio.sleep(5)
            return Response(200)

        loop = asyncio.get_running_loop()
        sender = Sender(MockTransport(handler), concurrency=3, timeout=0.2)
        started = loop.time()
        first = sender.submit(request("/slow1"), b"a")
        await asyncio.sleep(0.1)
        second = sender.submit(request("/slow2"), b"b")
        outcome = await first
        first_done = loop.time() - started
        assert outcome.error == "timeout after 0.2s"
        # uvloop's clock counts whole milliseconds: a timer may end a hair before.
        assert 0.2 - CLOCK_STEP <= first_done < 0.35, first_done
        outcome = await second
        second_done = loop.time() - started
        assert outcome.error == "timeout after 0.2s"
        assert 0.3 - CLOCK_STEP <= second_done < 0.45, second_done
        # The same workers carry on, and a fast request is not cut short.
        fast = await asyncio.gather(*(sender.submit(request(f"/f{i}"), i) for i in range(6)))
        assert [o.response for o in fast] == [Response(200)] * 6
        await sender.aclose()

    run_on(monkeypatch, loop, main())


def test_drain_waits_and_aclose_cancels_what_is_left() -> None:
    async def main() -> None:
        async def handler(req: OutgoingRequest) -> Response:
            await asyncio.sleep(10 if req.path == "/stuck" else 0.01)
            return Response(200)

        sender = Sender(MockTransport(handler), concurrency=4)
        quick = sender.submit(request("/quick"), b"a")
        stuck = sender.submit(request("/stuck"), b"b")
        behind = sender.submit(request("/behind"), b"b")
        assert await sender.drain(0.2) is False
        assert quick.done() and not stuck.done()
        assert sender.in_flight == 2
        await sender.aclose()
        assert stuck.cancelled() and behind.cancelled()
        assert sender.in_flight == 0
        assert await sender.drain(0) is True

    asyncio.run(main())


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Sender(MockTransport(lambda r: Response(200)), concurrency=0)


def test_transport_sends_exactly_the_recorded_request() -> None:
    """No header of the client library's own, raw path, exact body, DELETE without a body."""
    body = bytes(range(256)) * 3
    events = [
        make_event(
            method="POST",
            path="/up?x=%41&a=b+c&tag=1&tag=2",
            headers=[
                ("Host", "shop.example.com"),
                ("User-Agent", "recorded/1"),
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(len(body))),
                ("X-Tag", "a"),
                ("x-tag", "b"),
                ("Accept-Encoding", "gzip"),
                ("Cookie", "s=1"),
            ],
            body=body,
        ),
        make_event(method="DELETE", path="/api/orders/4?soft=1", headers=[("Host", "h")]),
        make_event(method="GET", path="/nothing", headers=[]),
        make_event(
            method="POST", path="/chunked", headers=[("Transfer-Encoding", "chunked")], body=b"abc"
        ),
    ]

    async def main(url: str) -> list[Outcome]:
        target = Target.parse(url)
        sender = Sender(Http1Transport(), concurrency=4, timeout=10)
        futures = [sender.submit(build_request(e, target), b"conn") for e in events]
        outcomes = await asyncio.gather(*futures)
        await sender.aclose()
        return list(outcomes)

    with RecordingShadow() as shadow:
        outcomes = asyncio.run(main(shadow.url))
        received = shadow.received
    assert [o.response.status if o.response else o.error for o in outcomes] == [200] * 4
    assert [r.path for r in received] == [
        "/up?x=%41&a=b+c&tag=1&tag=2",
        "/api/orders/4?soft=1",
        "/nothing",
        "/chunked",
    ]
    host = f"127.0.0.1:{shadow.port}"
    up, delete, nothing, chunked = received
    assert up.headers == [
        (b"Host", host.encode()),
        (b"User-Agent", b"recorded/1"),
        (b"Content-Type", b"application/octet-stream"),
        (b"Content-Length", str(len(body)).encode()),
        (b"X-Tag", b"a"),
        (b"x-tag", b"b"),
        (b"Accept-Encoding", b"gzip"),
        (b"Cookie", b"s=1"),
        (REPLAY_HEADER.encode(), events[0]["id"].encode()),
    ]
    assert up.body == body
    assert delete.headers == [
        (b"Host", host.encode()),
        (REPLAY_HEADER.encode(), events[1]["id"].encode()),
    ]
    assert delete.body == b""
    assert [n for n, _ in nothing.headers] == [b"Host", REPLAY_HEADER.encode()]
    assert chunked.headers[-1] == (b"Content-Length", b"3")
    assert chunked.body == b"abc"
    # The shadow's answer is kept as it came (no decompression), for comparison later.
    assert outcomes[0].response is not None and b'"body_length": 768' in outcomes[0].response.body


def test_transport_reports_a_refused_connection() -> None:
    from tests.support import free_port

    async def main() -> Outcome:
        sender = Sender(Http1Transport(), timeout=5)
        target = Target.parse(f"http://127.0.0.1:{free_port()}")
        outcome = await sender.submit(build_request(make_event(), target), None)
        await sender.aclose()
        return outcome

    outcome = asyncio.run(main())
    assert not outcome.ok
    assert "ConnectionRefusedError" in (outcome.error or "")


def test_wait_for_room_returns_when_a_slot_frees_or_times_out() -> None:
    async def main() -> None:
        async def handler(req: OutgoingRequest) -> Response:
            await asyncio.sleep(0.05 if req.path == "/short" else 10)
            return Response(200)

        sender = Sender(MockTransport(handler), concurrency=4)
        sender.submit(request("/short"), b"a")
        sender.submit(request("/long"), b"b")
        assert await sender.wait_for_room(3, 1.0) is True  # already below
        assert await sender.wait_for_room(2, 1.0) is True  # /short finished
        assert sender.in_flight == 1
        assert await sender.wait_for_room(1, 0.05) is False
        await sender.aclose()

    asyncio.run(main())
