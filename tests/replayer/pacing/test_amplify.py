"""Amplification: how many copies, where in the slot, marked, counted, never compared.

The planning is tested on its own (copies per key, fraction, writes, slot);
the sending through the pipeline with an in-process transport and a real
scheduler at the recorded pace. tests/e2e/test_capacity.py does it through
real processes.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from replayer.models import OutgoingRequest, Record, Response, Target
from replayer.pacing.amplify import (
    MAX_SLOT_SECONDS,
    REPLAY_HEADER,
    Amplifier,
    Amplify,
    key_fraction,
    marked,
)
from replayer.pacing.clock import Pace, Scheduler
from replayer.pipeline import Pipeline
from replayer.results.stage import Comparison, ComparisonOptions
from replayer.sending import request as request_module
from replayer.sending.sender import MockTransport, Sender
from replayer.transforming.loader import parse_text
from replayer.transforming.stage import Transformer
from schemas.codec import Codec
from tests.replayer.events import make_event
from tests.replayer.transforming.test_stage import Collected
from trafficmirror.cli import amplify as cli_amplify

CODEC = Codec()


def test_the_header_and_the_maximum_are_the_ones_the_rest_uses() -> None:
    from replayer.pacing import amplify

    assert REPLAY_HEADER == request_module.REPLAY_HEADER
    assert amplify.MAX_FACTOR == cli_amplify.MAX_FACTOR


@pytest.mark.parametrize("factor", [0.5, 0.0, -1.0, 101.0, float("nan"), float("inf")])
def test_a_factor_outside_1_to_100_is_refused(factor: float) -> None:
    with pytest.raises(ValueError, match="between 1 and 100"):
        Amplify(factor=factor)


def test_a_whole_factor_gives_every_read_that_many_sends() -> None:
    amplifier = Amplifier(Amplify(factor=3))
    for n in range(50):
        assert amplifier.copies(f"k{n}".encode(), f"id{n}", "GET") == 2
    assert amplifier.copies(None, "x", "head") == 2


def test_a_fraction_is_met_on_average_and_chosen_by_key() -> None:
    amplifier = Amplifier(Amplify(factor=2.3))
    keys = [f"10.0.{n // 250}.{n % 250}:{40000 + n}".encode() for n in range(4000)]
    counts = [amplifier.copies(k, "id", "GET") for k in keys]
    assert set(counts) == {1, 2}
    sends = sum(c + 1 for c in counts) / len(keys)
    assert abs(sends - 2.3) < 0.03, sends
    # The same key always gets the same number, whatever the record.
    for key, count in zip(keys[:200], counts[:200], strict=True):
        assert amplifier.copies(key, "another-id", "GET") == count
        assert (key_fraction(key) < 0.3) == (count == 2)
    # Without a key the exchange id decides, as consistently.
    assert amplifier.copies(None, "abc", "GET") == amplifier.copies(None, "abc", "GET")


def test_writes_are_sent_once_unless_asked() -> None:
    assert Amplifier(Amplify(factor=4)).copies(b"k", "i", "POST") == 0
    assert Amplifier(Amplify(factor=4)).copies(b"k", "i", "DELETE") == 0
    assert Amplifier(Amplify(factor=4, writes=True)).copies(b"k", "i", "POST") == 3
    assert Amplifier(Amplify(factor=1)).copies(b"k", "i", "GET") == 0


def test_the_slot_is_a_moving_mean_of_the_gaps_with_a_ceiling() -> None:
    amplifier = Amplifier(Amplify(factor=2))
    assert amplifier.slot_us(1_000_000) == 0  # nothing known yet
    for n in range(1, 60):
        slot = amplifier.slot_us(1_000_000 + n * 50_000)
    assert slot == pytest.approx(50_000)
    amplifier.slot_us(1_000_000 + 60 * 50_000 + 3600 * 1_000_000)  # a long pause
    assert amplifier.slot_us(1_000_000 + 61 * 50_000 + 3600 * 1_000_000) == MAX_SLOT_SECONDS * 1e6


def test_a_copy_is_marked_with_its_number() -> None:
    request = OutgoingRequest(
        "GET", Target.parse("http://s"), "/a", (("Host", "s"), (REPLAY_HEADER, "ex-1")), b"", "ex-1"
    )
    copy = marked(request, 2)
    assert copy.headers == (("Host", "s"), (REPLAY_HEADER, "ex-1/2"))
    assert request.header(REPLAY_HEADER) == "ex-1"  # the original is untouched
    bare = OutgoingRequest("GET", Target.parse("http://s"), "/a", (), b"", "ex-2")
    assert marked(bare, 1).header(REPLAY_HEADER) == "ex-2/1"


def _records(starts_us: list[int], methods: list[str]) -> list[Record]:
    records = []
    for n, (start, method) in enumerate(zip(starts_us, methods, strict=True)):
        event = make_event(
            method=method,
            path=f"/p/{n}",
            request_start_us=start,
            client=("10.0.0.1", 41000 + n % 3),
        )
        key = f"10.0.0.1:{41000 + n % 3}".encode()
        records.append(Record("t", n % 2, n, key, CODEC.encode(event).value, start // 1000))
    return records


@pytest.mark.parametrize("speed", [1.0, 2.0])
def test_through_the_pipeline_copies_are_spread_marked_counted_and_not_compared(
    speed: float,
) -> None:
    """20 GETs 40 ms apart, 2 POSTs, at `speed`, --amplify 2.5 (chosen by key)."""
    base = 1_700_000_000_000_000
    starts = [base + n * 40_000 for n in range(22)]
    methods = ["GET"] * 20 + ["POST"] * 2
    arrivals: list[tuple[float, str, str]] = []

    async def main() -> Pipeline:
        def handler(request: OutgoingRequest) -> Response:
            arrivals.append((time.time(), request.header(REPLAY_HEADER) or "", request.method))
            return Response(200)

        sender = Sender(MockTransport(handler), concurrency=16)
        scheduler = Scheduler(Pace(speed=speed))
        pipeline = Pipeline(
            codec=CODEC,
            target=Target.parse("http://s"),
            sender=sender,
            scheduler=scheduler,
            amplify=Amplify(factor=2.5),
        )
        futures = [pipeline.handle(r) for r in _records(starts, methods)]
        await asyncio.gather(*futures)
        assert await pipeline.wait_for_room(1, 5.0)  # the copies are held as in flight
        await scheduler.aclose()
        await sender.aclose()
        return pipeline

    pipeline = asyncio.run(main())
    amplifier = Amplifier(Amplify(factor=2.5))
    keys = [f"10.0.0.1:{41000 + n % 3}".encode() for n in range(22)]
    wanted = sum(amplifier.copies(k, "", m) for k, m in zip(keys, methods, strict=True))
    assert wanted > 20  # some keys got the fractional copy
    copies = [(at, mark) for at, mark, _ in arrivals if "/" in mark]
    assert len(copies) == wanted
    assert pipeline.stats.sent == 22  # records, not requests
    assert pipeline.stats.copies.sent == wanted
    assert f"copies sent {wanted}, copy errors 0" in pipeline.stats.line()
    originals = {mark: at for at, mark, _ in arrivals if "/" not in mark}
    assert len(originals) == 22
    for at, mark in copies:
        exchange, number = mark.rsplit("/", 1)
        assert number in ("1", "2")
        # Within the record's slot (40 ms recorded, on the virtual clock 40 ms / speed;
        # plus the loop's lateness), never before it.
        assert 0 <= at - originals[exchange] < 0.04 / speed + 0.03, mark
    # The copies are spread, not sent with their original: --speed 2 halves the offsets.
    offsets = sorted(at - originals[mark.rsplit("/", 1)[0]] for at, mark in copies)
    median = offsets[len(offsets) // 2]
    assert 0.004 / speed < median < 0.03 / speed, offsets
    assert [m for _, m, method in arrivals if method == "POST"] == [
        m for _, m, method in arrivals if method == "POST" and "/" not in m
    ]
    assert sum(1 for *_, method in arrivals if method == "POST") == 2


def test_copies_not_yet_due_are_cancelled_with_the_scheduler() -> None:
    base = 1_700_000_000_000_000
    # 0.9 s apart, so each record's copies fall in the future.
    starts = [base, base + 900_000, base + 1_800_000]

    async def main() -> Pipeline:
        sender = Sender(MockTransport(lambda r: Response(200)), concurrency=4)
        scheduler = Scheduler(Pace(speed=1.0))
        pipeline = Pipeline(
            codec=CODEC,
            target=Target.parse("http://s"),
            sender=sender,
            scheduler=scheduler,
            amplify=Amplify(factor=3),
        )
        for r in _records(starts, ["GET"] * 3):
            pipeline.handle(r)
        await asyncio.sleep(0.05)
        assert pipeline.in_flight > 0
        await scheduler.aclose()
        await asyncio.sleep(0)
        assert pipeline.in_flight == 0  # nothing waits for a copy that will never go
        await sender.aclose()
        return pipeline

    pipeline = asyncio.run(main())
    assert pipeline.stats.copies.sent < 6


def test_copies_are_transformed_go_to_the_shadow_only_and_only_the_original_is_compared() -> None:
    rules = "rules:\n  - name: auth\n    set_header: {name: Authorization, value: Bearer t}\n"
    options = parse_text(rules, "t.yaml", {})
    shadow, baseline = Target.parse("http://shadow:81"), "http://baseline:82"
    seen: list[OutgoingRequest] = []
    collected = Collected()

    async def main() -> None:
        def handler(request: OutgoingRequest) -> Response:
            seen.append(request)
            return Response(200, (("Content-Type", "application/json"),), b"{}")

        sender = Sender(MockTransport(handler), concurrency=4)
        transformer = Transformer(options, shadow, baseline=True)
        comparison = Comparison(
            ComparisonOptions(baseline=baseline),
            topic="t",
            target=shadow,
            publisher=collected,
            replayer_id="r",
        )
        pipeline = Pipeline(
            codec=CODEC,
            target=shadow,
            sender=sender,
            comparison=comparison,
            transformer=transformer,
            amplify=Amplify(factor=3),
        )
        records = _records([1_700_000_000_000_000 + n * 1000 for n in range(4)], ["GET"] * 4)
        await asyncio.gather(*(pipeline.handle(r) for r in records))
        assert await pipeline.wait_for_room(1, 5.0)
        await sender.aclose()
        await transformer.aclose()

    asyncio.run(main())
    copies = [r for r in seen if "/" in (r.header(REPLAY_HEADER) or "")]
    assert len(copies) == 8
    assert {r.target.origin for r in copies} == {"http://shadow:81"}  # never the baseline
    assert {r.header("Authorization") for r in copies} == {"Bearer t"}
    assert sum(r.target.origin == "http://baseline:82" for r in seen) == 4
    assert len(collected.results) == 4  # one result per record: copies are not compared
