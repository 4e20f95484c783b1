"""Senders: a cap and a timeout per target, one in-flight count over both."""

from __future__ import annotations

import asyncio

from replayer.assembly import Senders
from replayer.models import OutgoingRequest, Response, Target
from replayer.sending.guard import GuardOptions
from replayer.sending.sender import MockTransport

TARGET = Target.parse("http://127.0.0.1:9")


def request(path: str) -> OutgoingRequest:
    return OutgoingRequest("GET", TARGET, path, (("Host", TARGET.host_port),), b"", path)


def test_each_target_gets_its_own_cap_and_timeout_and_the_guard_is_the_shadows() -> None:
    async def main() -> None:
        running = {"shadow": 0, "baseline": 0}
        peak = dict(running)

        async def handler(req: OutgoingRequest) -> Response:
            side = req.path.split("/")[1]
            running[side] += 1
            peak[side] = max(peak[side], running[side])
            try:
                await asyncio.sleep(0.05 if side == "shadow" else 0.2)
            finally:
                running[side] -= 1
            return Response(200)

        senders = Senders.open(
            transport=MockTransport(handler),
            concurrency=3,
            timeout=1,
            baseline=True,
            options=GuardOptions(baseline_concurrency=2, baseline_timeout=0.1),
        )
        assert senders.baseline is not None
        assert senders.concurrency == 5
        assert senders.shadow.gate is not None and senders.baseline.gate is None
        shadow = [senders.shadow.submit(request(f"/shadow/{n}"), None) for n in range(6)]
        baseline = [senders.baseline.submit(request(f"/baseline/{n}"), None) for n in range(4)]
        assert senders.in_flight == 10
        # Room comes as soon as either target finishes one.
        assert await senders.wait_for_room(10, 1.0)
        assert senders.in_flight < 10
        assert await senders.drain(2.0)
        assert senders.in_flight == 0
        assert all(f.result().ok for f in shadow)
        assert {f.result().error for f in baseline} == {"timeout after 0.1s"}
        assert peak == {"shadow": 3, "baseline": 2}
        await senders.aclose()

    asyncio.run(main())


def test_without_a_baseline_or_a_guard() -> None:
    async def main() -> None:
        senders = Senders.open(
            transport=MockTransport(lambda r: Response(204)),
            concurrency=2,
            timeout=1,
            baseline=False,
            options=GuardOptions(max_error_rate=1.0),
        )
        assert senders.baseline is None and senders.gate is None
        assert not senders.holding and await senders.wait_sending(0.01)
        future = senders.shadow.submit(request("/x"), b"k")
        assert await senders.drain(1.0)
        assert future.result().response == Response(204)
        await senders.aclose()

    asyncio.run(main())
