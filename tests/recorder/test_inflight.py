"""The in-flight tracker, and the recorder's accounting: seen = recorded + dropped + failed.

The tracker is driven with mitmproxy's test flows; the accounting through the
addon in mitmproxy's test context against a real broker (the mock cluster),
or against no broker at all for the dropped case.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from mitmproxy import flow
from mitmproxy.test import taddons, tflow

from recorder.accounting import Counts
from recorder.addon import RECORDED_MARK, Recorder
from recorder.drain import STOPPED_ERROR
from recorder.inflight import IN_FLIGHT, InFlight
from recorder.sink import SinkStats
from tests.recorder.helpers import read_events
from tests.support import Kafka, free_port


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- the tracker ------------------------------------------------------------------


def test_tracks_flows_from_request_headers_until_finished() -> None:
    tracker = InFlight()
    a, b, c = tflow.tflow(), tflow.tflow(), tflow.tflow()
    c.client_conn = a.client_conn  # two exchanges on one connection
    for f in (a, b, c):
        tracker.requestheaders(f)
    assert len(tracker) == 3 and tracker
    assert [f.id for f in tracker.unfinished()] == [a.id, b.id, c.id]  # oldest first
    assert tracker.busy_connections() == {a.client_conn.id, b.client_conn.id}

    assert tracker.finish(a) is True
    assert tracker.finish(a) is False  # once only
    assert tracker.busy_connections() == {a.client_conn.id, b.client_conn.id}  # c is still on it
    assert tracker.finish(c) is True
    assert tracker.busy_connections() == {b.client_conn.id}
    # unfinished() is a copy: finishing while iterating over it is safe.
    for f in tracker.unfinished():
        tracker.finish(f)
    assert len(tracker) == 0 and not tracker and tracker.unfinished() == []


def test_a_flow_it_never_saw_is_ignored() -> None:
    tracker = InFlight()
    assert tracker.finish(tflow.tflow()) is False
    assert len(tracker) == 0


def test_the_gauge_adds_up_every_tracker_when_read() -> None:
    def gauge() -> float:
        [metric] = IN_FLIGHT.collect()
        return float(metric.samples[0].value)

    before = gauge()
    one, two = InFlight(), InFlight()
    flows = [tflow.tflow() for _ in range(3)]
    one.requestheaders(flows[0])
    two.requestheaders(flows[1])
    two.requestheaders(flows[2])
    assert gauge() == before + 3
    two.finish(flows[1])
    assert gauge() == before + 2
    del one  # a dropped tracker (a reloaded script) no longer counts
    assert gauge() == before + 1


# -- the accounting ---------------------------------------------------------------


def test_counts_add_up_and_say_when_they_balance() -> None:
    stats = SinkStats(enqueued=7, delivered=5, queue_full=1, undelivered=1, delivery_failed=1)
    counts = Counts.of(stats, seen=9, convert_failed=1, filtered=2, cut_off=1)
    assert (counts.recorded, counts.dropped, counts.failed) == (5, 2, 2)
    assert counts.balanced and counts.pending == 0
    total = counts + Counts(seen=3, delivered=2, produce_failed=1, filtered=1)
    assert (total.seen, total.recorded, total.failed, total.filtered) == (12, 7, 3, 3)
    assert total.balanced
    line = total.line()
    assert "seen=12 recorded=7 dropped=2 failed=3 (" in line
    assert line.endswith("filtered=3 cut_off=1 budget_cut=0 truncated=0")
    assert not Counts(seen=2, delivered=1).balanced


def configured(
    tctx: taddons.context, rec: Recorder, servers: str, topic: str, **extra: Any
) -> None:
    tctx.configure(
        rec,
        **{
            "trafficmirror_bootstrap_servers": servers,
            "trafficmirror_topic": topic,
            "trafficmirror_flush_timeout": "10",
            **extra,
        },
    )


def started(rec: Recorder, **kwargs: Any) -> flow.Flow:
    f = tflow.tflow(**kwargs)
    rec.inflight.requestheaders(f)
    return f


def test_every_exchange_lands_in_one_bucket(kafka: Kafka, caplog: pytest.LogCaptureFixture) -> None:
    first, second = kafka.new_topic(1), kafka.new_topic(1)

    async def scenario() -> tuple[Recorder, dict[str, str]]:
        rec = Recorder()
        ids: dict[str, str] = {}
        with taddons.context(rec) as tctx:
            configured(tctx, rec, kafka.bootstrap_servers, first, trafficmirror_filter="!~u /skip")
            answered = started(rec, resp=True)
            rec.response(answered)
            answered.error = flow.Error("client disconnected")
            rec.error(answered)  # once only
            failed = started(rec, err=True)
            rec.error(failed)
            skipped = started(rec, resp=True)
            skipped.request.path = "/skip"
            rec.response(skipped)  # filtered: beside seen, not in it
            broken = started(rec, resp=True)
            broken.request.data.timestamp_start = None  # type: ignore[assignment]
            rec.response(broken)  # convert_failed
            # A new sink (reconfiguration) keeps the identity across both.
            tctx.configure(rec, trafficmirror_topic=second)
            slow = started(rec)  # no response yet: the stop cuts it off
            gone = started(rec, resp=True)
            assert len(rec.inflight) == 2
            rec.record_unfinished(slow, STOPPED_ERROR)
            rec.response(slow)  # it finishes after all: already recorded
            rec.response(gone)
            rec.record_unfinished(gone, STOPPED_ERROR)  # recorded already: nothing
            assert len(rec.inflight) == 0
            assert RECORDED_MARK in slow.metadata
            ids = {"answered": answered.id, "failed": failed.id, "slow": slow.id}
            with caplog.at_level(logging.INFO, "recorder"):
                counts = rec.counts()
                # Before the flush, what is not accounted for yet is still queued.
                assert counts.seen == 5 and 0 <= counts.pending <= 2
                rec.done()
        return rec, ids

    rec, ids = run(scenario())
    assert rec.last_counts is not None and rec.last_counts.balanced
    assert (rec.last_counts.seen, rec.last_counts.cut_off) == (5, 1)
    assert rec.counts() == Counts()  # done() starts again from 0
    assert (
        "seen=5 recorded=4 dropped=0 failed=1 (queue_full=0 undelivered=0 delivery_failed=0 "
        "produce_failed=0 convert_failed=1) filtered=1 cut_off=1"
    ) in caplog.text
    assert "does not add up" not in caplog.text
    assert {e["id"] for _, e in read_events(kafka.bootstrap_servers, first, 2)} == {
        ids["answered"],
        ids["failed"],
    }
    got = {e["id"]: e for _, e in read_events(kafka.bootstrap_servers, second, 2)}
    assert got[ids["slow"]]["error"] == STOPPED_ERROR
    assert got[ids["slow"]]["response"] is None


def test_a_filter_that_raises_counts_as_seen_and_failed(kafka: Kafka, topic: str) -> None:
    async def scenario() -> Counts:
        rec = Recorder()
        with taddons.context(rec) as tctx:
            configured(tctx, rec, kafka.bootstrap_servers, topic)

            def broken_filter(_: Any) -> bool:
                raise RuntimeError("no")

            rec._filter = broken_filter
            rec.response(started(rec, resp=True))
            counts = rec.counts()
            rec.done()
        return counts

    counts = run(scenario())
    assert (counts.seen, counts.convert_failed, counts.filtered) == (1, 1, 0)
    assert counts.balanced


def test_identity_holds_when_kafka_is_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        rec = Recorder()
        with taddons.context(rec) as tctx:
            configured(
                tctx, rec, f"127.0.0.1:{free_port()}", "t", trafficmirror_flush_timeout="0.2"
            )
            for _ in range(4):
                rec.response(started(rec, resp=True))
            rec.record_unfinished(started(rec), STOPPED_ERROR)
            with caplog.at_level(logging.INFO, "recorder"):
                rec.done()

    run(scenario())
    assert "seen=5 recorded=0 dropped=5 failed=0" in caplog.text
    assert "cut_off=1" in caplog.text
