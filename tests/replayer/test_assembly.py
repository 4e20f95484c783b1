"""Assembly: the in-flight bound, one pipeline built for both commands, and Senders (a cap and
a timeout per target, one in-flight count over both)."""

from __future__ import annotations

import asyncio
from typing import Any

from replayer.assembly import IN_FLIGHT_PER_SLOT, Assembly, Outputs, ReplayConfig, Senders
from replayer.models import OutgoingRequest, Record, Response, Target
from replayer.pacing.clock import Pace
from replayer.results.stage import Comparison, ComparisonOptions
from replayer.selecting.selector import SelectOptions
from replayer.sending.guard import GuardOptions
from replayer.sending.sender import MockTransport
from schemas.codec import Codec
from tests.replayer.events import make_event
from trafficmirror.plumbing.kafka import KafkaSettings

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


def config(**overrides: Any) -> ReplayConfig:
    return ReplayConfig(
        settings=KafkaSettings("127.0.0.1:9"), topic="t", target="http://127.0.0.1:9", **overrides
    )


def test_the_in_flight_bound_counts_the_slots_of_both_targets() -> None:
    assert IN_FLIGHT_PER_SLOT == 4
    assert config(concurrency=2).max_in_flight == 64  # never below a batch of 64
    assert config(concurrency=100).max_in_flight == 400
    with_baseline = ComparisonOptions(baseline="http://127.0.0.1:8")
    assert config(concurrency=100, comparison=with_baseline).max_in_flight == 800
    own_cap = config(
        concurrency=100, comparison=with_baseline, guardrails=GuardOptions(baseline_concurrency=10)
    )
    assert own_cap.max_in_flight == 440


def test_one_assembly_wires_senders_scheduler_selection_and_comparison_into_the_pipeline() -> None:
    options = ComparisonOptions(baseline="http://127.0.0.1:8", write_results=False)
    replay = config(
        concurrency=5,
        comparison=options,
        guardrails=GuardOptions(baseline_concurrency=3),
        selection=SelectOptions(methods=None),
        pace=Pace(speed=None),
    )
    assembly = Assembly(replay, share=0.5)
    comparison = Comparison(options, topic="t", target=assembly.target)
    hosts: list[str] = []

    def handler(req: OutgoingRequest) -> Response:
        hosts.append(req.target.host_port)
        return Response(200, body=b"{}")

    async def main() -> None:
        senders, pipeline = assembly.start(
            Outputs(comparison, None),  # type: ignore[arg-type]
            MockTransport(handler),
        )
        assert senders.baseline is not None
        assert (senders.shadow.concurrency, senders.baseline.concurrency) == (5, 3)
        assert pipeline.sender is senders.shadow and pipeline.baseline_sender is senders.baseline
        assert pipeline.scheduler is assembly.scheduler and pipeline.selector is assembly.selector
        value = Codec().encode(make_event(method="DELETE")).value
        result = await pipeline.handle(Record("t", 0, 0, b"k", value))
        assert result.kind == "sent"
        await senders.aclose()
        await assembly.scheduler.aclose()

    asyncio.run(main())
    assert sorted(hosts) == ["127.0.0.1:8", "127.0.0.1:9"]
    assert comparison.counts.match + comparison.counts.mismatch == 1
