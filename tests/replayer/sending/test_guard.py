"""The error-rate guard: when it trips, how it backs off and probes, and through a Sender."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

import pytest
from prometheus_client import REGISTRY

from replayer.models import OutgoingRequest, Response, Target
from replayer.sending import guard as guard_module
from replayer.sending.gate import Gate
from replayer.sending.guard import ErrorRateGuard, GuardOptions, State
from replayer.sending.sender import MockTransport, Sender


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def guard(**options: float) -> tuple[ErrorRateGuard, FakeClock]:
    clock = FakeClock()
    return ErrorRateGuard(GuardOptions(**options), clock), clock  # type: ignore[arg-type]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_one_failure_is_not_a_rate_below_the_minimum_of_requests() -> None:
    g, _ = guard(min_requests=20)
    for _ in range(19):
        g.observe(False)
    assert g.state is State.SENDING  # 19 of 19 failed, but 19 < 20 requests
    g.observe(False)
    assert g.state is State.BACKING_OFF
    assert g.window() == (20, 20)


def test_trips_only_when_the_rate_passes_the_limit() -> None:
    g, _ = guard(min_requests=20, max_error_rate=0.5)
    for _ in range(10):
        g.observe(True)
    for _ in range(10):
        g.observe(False)
    assert g.state is State.SENDING  # 10 of 20 = 50 %, not over it
    g.observe(False)
    assert g.state is State.BACKING_OFF  # 11 of 21


def test_old_outcomes_leave_the_window() -> None:
    g, clock = guard(min_requests=20, error_window=10)
    for _ in range(15):
        g.observe(False)
    clock.now += 11.5  # past the window (and its last tenth)
    for _ in range(15):
        g.observe(False)
    assert g.window() == (15, 15)
    assert g.state is State.SENDING
    clock.now += 5
    for _ in range(5):
        g.observe(False)
    assert g.state is State.BACKING_OFF  # 20 errors within 10 s


def test_successes_in_the_window_keep_it_sending() -> None:
    g, clock = guard(min_requests=4, max_error_rate=0.5)
    for _ in range(1000):
        g.observe(True)
        g.observe(False)
        g.observe(True)
        clock.now += 0.01
    assert g.state is State.SENDING
    assert g.backoffs == 0


def test_backoff_doubles_up_to_the_cap_and_a_good_probe_resumes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="replayer.sending.guard")
    before = sample("trafficmirror_replayer_guard_backoffs_total")
    g, clock = guard(min_requests=5, max_backoff=10)
    for _ in range(5):
        g.observe(False, error="ConnectionRefusedError")
    assert g.state is State.BACKING_OFF
    assert sample("trafficmirror_replayer_guard_state") == 1
    assert sample("trafficmirror_replayer_guard_backoffs_total") == before + 1
    delays = []
    for _ in range(6):
        delays.append(g.probe_due())
        clock.now += g.probe_due()
        assert g.probe_due() == 0
        g.start_probe()
        assert sample("trafficmirror_replayer_guard_state") == 2
        # A late answer to a request sent before the trip decides nothing.
        assert g.observe(True) is False
        assert g.state is State.PROBING
        assert g.observe(False, probe=True, error="timeout after 1s") is True  # send it again
        assert g.state is State.BACKING_OFF
    assert delays == [1, 2, 4, 8, 10, 10]
    clock.now += g.probe_due()
    g.start_probe()
    assert g.observe(True, probe=True) is False
    assert g.state is State.SENDING
    assert sample("trafficmirror_replayer_guard_state") == 0
    assert g.window() == (0, 0)  # a fresh window: one more error does not trip again
    g.observe(False)
    assert g.state is State.SENDING
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 + 6 + 1, lines  # one line per trip, failed probe and resume
    assert lines[0].startswith(
        "guard: shadow errors 5 of 5 requests in the last 10s (100%, over --max-error-rate "
        "50%; last: ConnectionRefusedError); backing off"
    )
    assert lines[1] == "guard: probe failed (timeout after 1s); still backing off, next probe in 2s"
    assert lines[-1].startswith("guard: shadow answered the probe after 45.0s of backing off")


def test_max_error_rate_100_percent_never_trips() -> None:
    g, _ = guard(max_error_rate=1.0, min_requests=1)
    for _ in range(100):
        g.observe(False)
    assert g.state is State.SENDING
    assert not GuardOptions(max_error_rate=1.0).enabled


@pytest.mark.parametrize(
    "options",
    [
        {"max_error_rate": 1.5},
        {"max_error_rate": -0.1},
        {"error_window": 0},
        {"min_requests": 0},
        {"max_backoff": 0.5},
        {"baseline_concurrency": 0},
        {"baseline_timeout": 0},
    ],
)
def test_options_are_validated(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        GuardOptions(**options)  # type: ignore[arg-type]


TARGET = Target.parse("http://127.0.0.1:9")


def request(path: str) -> OutgoingRequest:
    return OutgoingRequest("GET", TARGET, path, (("Host", TARGET.host_port),), b"", path)


def test_through_a_sender_requests_wait_a_probe_retries_and_nothing_is_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A shadow down for a while: the guard holds requests, probes, then lets all through."""
    monkeypatch.setattr(guard_module, "FIRST_BACKOFF", 0.05)

    async def main() -> None:
        down = True
        calls: list[tuple[float, str, State]] = []  # when, what, the guard's state then

        async def handler(req: OutgoingRequest) -> Response:
            calls.append((time.monotonic(), req.path, gate.state))
            await asyncio.sleep(0.002)
            if down:
                raise ConnectionRefusedError("refused")
            return Response(200)

        gate = Gate(GuardOptions(min_requests=8, max_backoff=1))
        sender = Sender(MockTransport(handler), concurrency=4, timeout=1, gate=gate)
        futures = [
            sender.submit(request(f"/{key}/{n}"), key.encode())
            for n in range(10)
            for key in "abcdef"
        ]
        while gate.state is State.SENDING:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.8)  # probes after 0.05, 0.1, 0.2, 0.4 s
        probes = [call for call in calls if call[2] is State.PROBING]
        # Besides the probes, only what was on the wire at the trip went out (the 8th
        # error tripped it, at most 3 others were on the wire).
        before = [call for call in calls if call[2] is State.SENDING]
        assert 8 <= len(before) <= 8 + 3
        assert len(calls) == len(before) + len(probes)
        assert gate.held > 0
        down = False
        outcomes = await asyncio.gather(*futures)
        await sender.aclose()

        # Nothing lost: every request has an outcome; errors only from before the trip.
        assert len(outcomes) == 60
        errors = [o for o in outcomes if not o.ok]
        assert len(errors) == len(before)  # a probe's failed attempts are not outcomes
        # While backing off only one request went out at a time: the same one, again.
        assert len(probes) >= 4
        assert len({path for _, path, _ in probes}) == 1, probes
        # Each delay doubles: never early, and late only by the loop's own latency.
        gaps = [b[0] - a[0] for a, b in zip(probes, probes[1:], strict=False)]
        for gap, delay in zip(gaps, (0.1, 0.2, 0.4), strict=False):
            assert delay - 0.005 <= gap < delay + 0.3, gaps
        # Every request of a connection still went out in order, the probe too.
        order: dict[str, list[int]] = defaultdict(list)
        for _, path, _ in calls:
            _, key, n = path.split("/")
            if not order[key] or order[key][-1] != int(n):
                order[key].append(int(n))
        for key, seen in order.items():
            assert seen == sorted(seen), (key, seen)
        assert gate.state is State.SENDING and gate.held == 0

    asyncio.run(main())


def test_a_closing_sender_cancels_the_held_requests() -> None:
    async def main() -> None:
        async def handler(req: OutgoingRequest) -> Response:
            raise ConnectionRefusedError("refused")

        gate = Gate(GuardOptions(min_requests=2))
        sender = Sender(MockTransport(handler), concurrency=1, gate=gate)
        futures = [sender.submit(request(f"/{n}"), None) for n in range(10)]
        while gate.state is State.SENDING or not gate.held:
            await asyncio.sleep(0.001)
        await sender.aclose()
        assert sum(f.cancelled() for f in futures) == 8
        assert sender.in_flight == 0
        assert gate.held == 0

    asyncio.run(main())
