"""Workers follow the group's session: the watcher on a real broker, the pacer on a real loop."""

from __future__ import annotations

import asyncio
import queue
import time

import pytest

from replayer.pacing.clock import Pace
from replayer.sessions.session import Session, new_session, switched
from replayer.sessions.store import publish, read_session
from replayer.sessions.watch import SessionPacer, SessionWatcher, session_pace
from tests.support import Kafka
from trafficmirror.plumbing.kafka import KafkaSettings

T0 = 1_760_000_000_000_000


class FakeScheduler:
    """Keeps every pace it is given, with the wall-clock time it was given."""

    def __init__(self, pace: Pace) -> None:
        self.pace = pace
        self.calls: list[tuple[float, Pace]] = []

    def set_pace(self, pace: Pace) -> None:
        self.pace = pace
        self.calls.append((time.time(), pace))


def session_at(start_at: float, speed: float | None = 1.0, group: str = "g") -> Session:
    us = round(start_at * 1_000_000)
    return new_session(
        group=group,
        anchor_us=T0,
        start_at_us=us,
        speed=speed,
        rate=50.0,
        since_us=None,
        until_us=None,
        now_us=us,
    )


def test_pacer_applies_a_new_session_at_once_and_a_change_at_its_moment() -> None:
    base = Pace(speed=None, rate=20.0)
    scheduler = FakeScheduler(base)

    def us(seconds: float) -> int:
        return round(seconds * 1e6)

    async def scenario() -> None:
        pacer = SessionPacer(scheduler, asyncio.get_running_loop())
        first = session_at(time.time() + 0.2, speed=1.0)
        pacer.update(first)  # its clock starts later, but the pace is set now
        assert [p for _, p in scheduler.calls] == [session_pace(first)]
        assert scheduler.pace == Pace(
            speed=1.0, rate=50.0, anchor_us=T0, start_at=first.start_at_us / 1e6
        )

        await asyncio.sleep(0.25)  # the session runs
        # Two quick `session set`s: the second continues the first's clock, so the
        # first must hold between the two moments.
        at = time.time() + 0.3
        second = switched(first, at_us=us(at), now_us=us(time.time()), speed=3.0)
        third = switched(second, at_us=us(at + 0.2), now_us=us(time.time()), speed=0.5)
        pacer.update(second)
        pacer.update(third)
        pacer.update(second)  # the same record again (a re-read) changes nothing
        await asyncio.sleep(0.15)
        assert len(scheduler.calls) == 1  # nothing switched before the agreed moment
        await asyncio.sleep(max(at + 0.1 - time.time(), 0))
        assert [p for _, p in scheduler.calls[1:]] == [session_pace(second)]
        await asyncio.sleep(max(at + 0.3 - time.time(), 0))
        assert [p for _, p in scheduler.calls[1:]] == [session_pace(second), session_pace(third)]
        for (applied_at, _), due in zip(scheduler.calls[1:], (at, at + 0.2), strict=True):
            assert due <= applied_at < due + 0.1  # a loop timer, on a busy machine

        # A newer record supersedes what waits for a later moment than its own.
        later = switched(third, at_us=us(time.time() + 0.3), now_us=us(time.time()), speed=4.0)
        sooner = switched(third, at_us=us(time.time() + 0.1), now_us=us(time.time()), speed=2.0)
        pacer.update(later)
        pacer.update(sooner)
        await asyncio.sleep(0.45)
        assert [p for _, p in scheduler.calls[3:]] == [session_pace(sooner)]

        pending = switched(sooner, at_us=us(time.time() + 0.2), now_us=us(time.time()), speed=9.0)
        pacer.update(pending)
        pacer.update(None)  # session stop: back to the worker's own pace, nothing waits on
        assert scheduler.calls[-1][1] == base and len(scheduler.calls) == 5
        await asyncio.sleep(0.3)
        assert len(scheduler.calls) == 5
        pacer.close()

    asyncio.run(scenario())


def test_pacer_applies_a_change_whose_moment_passed_at_once() -> None:
    scheduler = FakeScheduler(Pace())

    async def scenario() -> None:
        pacer = SessionPacer(scheduler, asyncio.get_running_loop())
        first = session_at(time.time() - 10)
        pacer.update(first)
        late = switched(
            first, at_us=round((time.time() - 1) * 1e6), now_us=round(time.time() * 1e6), speed=2.0
        )
        pacer.update(late)
        assert scheduler.pace == session_pace(late)
        # A different session replaces the running one at once, whatever its start.
        other = session_at(time.time() + 30)
        pacer.update(other)
        assert scheduler.pace == session_pace(other)

    asyncio.run(scenario())


def test_watcher_sees_the_newest_session_of_its_group_within_a_second(kafka: Kafka) -> None:
    topic = kafka.new_topic(2)
    settings = KafkaSettings(kafka.bootstrap_servers)
    changes: queue.Queue[tuple[float, Session | None]] = queue.Queue()
    watcher = SessionWatcher(settings, topic, "g")
    try:
        started = time.monotonic()
        assert watcher.load(timeout=5) is None  # no control topic at all: no session
        assert time.monotonic() - started < 5
        watcher.start(lambda s: changes.put((time.monotonic(), s)))

        first = session_at(time.time() + 1)
        publish(settings, topic, "other-group", session_at(time.time(), group="other-group"))
        written = time.monotonic()
        publish(settings, topic, "g", first)
        seen_at, seen = changes.get(timeout=10)
        assert seen == first
        # The topic appeared meanwhile (auto-created); once attached, it is quick:
        second = switched(first, at_us=first.start_at_us, now_us=first.start_at_us, speed=4.0)
        written = time.monotonic()
        publish(settings, topic, "g", second)
        seen_at, seen = changes.get(timeout=5)
        assert seen == second and seen_at - written < 1.0

        written = time.monotonic()
        publish(settings, topic, "g", None)  # session stop
        seen_at, seen = changes.get(timeout=5)
        assert seen is None and seen_at - written < 1.0
        with pytest.raises(queue.Empty):
            changes.get(timeout=0.5)  # the other group's record never showed up
    finally:
        watcher.close()


def test_a_worker_starting_later_loads_the_session_in_effect(kafka: Kafka) -> None:
    topic = kafka.new_topic(2)
    settings = KafkaSettings(kafka.bootstrap_servers)
    first = session_at(time.time())
    publish(settings, topic, "g", first)
    second = switched(
        first, at_us=first.start_at_us + 5_000_000, now_us=first.start_at_us, speed=0.5
    )
    publish(settings, topic, "g", second)
    publish(settings, topic, "h", session_at(time.time(), group="h"))
    assert read_session(settings, topic, "g") == second
    watcher = SessionWatcher(settings, topic, "g")
    try:
        assert watcher.load(timeout=10) == second
    finally:
        watcher.close()
    publish(settings, topic, "g", None)
    assert read_session(settings, topic, "g") is None
    assert read_session(settings, topic, "h") is not None


def test_follower_seeks_once_for_a_new_window_but_not_for_a_session_in_progress() -> None:
    from replayer.sessions.watch import SessionFollower

    windows: list[Session | None] = []

    async def scenario() -> None:
        follower = SessionFollower(
            KafkaSettings("127.0.0.1:9"), "t", "g", FakeScheduler(Pace()), windows.append
        )
        follower.pacer = SessionPacer(follower.scheduler, asyncio.get_running_loop())
        now = time.time()
        windowed = new_session(
            group="g",
            anchor_us=T0,
            start_at_us=round((now - 5) * 1e6),
            speed=1.0,
            rate=None,
            since_us=T0,
            until_us=T0 + 10**6,
            now_us=round(now * 1e6),
        )
        # Found at start, already running: other workers moved the partitions; go on.
        follower._update(windowed, live=False)
        assert follower.take_seek() is None and windows == [windowed]
        follower._update(None, live=True)
        assert windows == [windowed, None]
        # Arriving while the worker runs: seek, once; a revision does not seek again.
        follower._update(windowed, live=True)
        assert follower.take_seek() == windowed and follower.take_seek() is None
        revised = switched(windowed, at_us=round(now * 1e6), now_us=round(now * 1e6), speed=2.0)
        follower._update(revised, live=True)
        assert follower.take_seek() is None and windows == [windowed, None, windowed]
        # Found at start before its clock starts: this worker moves its partitions too.
        follower._update(None, live=True)
        upcoming = new_session(
            group="g",
            anchor_us=T0,
            start_at_us=round((time.time() + 2) * 1e6),
            speed=1.0,
            rate=None,
            since_us=T0,
            until_us=None,
            now_us=0,
        )
        follower._update(upcoming, live=False)
        # A stop before the worker got to it cancels the seek.
        follower._update(None, live=True)
        assert follower.take_seek() is None
        follower._update(upcoming, live=False)
        assert follower.take_seek() == upcoming
        follower.close()

    asyncio.run(scenario())


def test_a_record_that_is_not_a_session_is_ignored_with_a_warning(
    kafka: Kafka, caplog: pytest.LogCaptureFixture
) -> None:
    from confluent_kafka import Producer

    topic = kafka.new_topic(1)
    settings = KafkaSettings(kafka.bootstrap_servers)
    good = session_at(time.time())
    publish(settings, topic, "g", good)
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    producer.produce(f"{topic}.control", value=b"\xc3\x01garbage!", key=b"g")
    assert producer.flush(10) == 0
    assert read_session(settings, topic, "g") == good
    assert "ignoring a record in" in caplog.text and "unknown schema fingerprint" in caplog.text
