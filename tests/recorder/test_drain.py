"""The drain's parts that need no proxy: marking responses, and what it does at its deadline.

The drain against live connections (`record` and `mitmdump` stopped under
load) is tested through real processes in test_shutdown.py.
"""

from __future__ import annotations

import asyncio
import time

from mitmproxy.test import taddons, tflow

from recorder.drain import STOPPED_ERROR, Drainer, close_after
from recorder.event import ADDED_CONNECTION_CLOSE, flow_to_event, recorder_info
from recorder.inflight import InFlight


def test_http1_responses_are_marked_close_first_and_once() -> None:
    f = tflow.tflow(resp=True)
    assert f.response is not None
    f.response.headers["Connection"] = "keep-alive"
    close_after(f)
    close_after(f)
    assert f.response.headers.fields[0] == (b"connection", b"close")
    assert f.response.headers.get_all("connection") == ["close", "keep-alive"]
    assert f.metadata[ADDED_CONNECTION_CLOSE] is True
    # The event keeps the app's headers only.
    event = flow_to_event(f, 1024, recorder_info("t"))
    assert event["response"] is not None
    headers = event["response"]["message"]["headers"]
    assert headers.count(b"close") == 0 and b"keep-alive" in headers


def test_a_response_that_closes_anyway_and_http2_are_left_alone() -> None:
    closing = tflow.tflow(resp=True)
    assert closing.response is not None
    closing.response.headers["Connection"] = "Keep-Alive, Close"
    close_after(closing)
    assert ADDED_CONNECTION_CLOSE not in closing.metadata
    h2 = tflow.tflow(resp=True)
    h2.request.http_version = "HTTP/2.0"
    close_after(h2)
    assert ADDED_CONNECTION_CLOSE not in h2.metadata
    assert h2.response is not None and "connection" not in h2.response.headers
    no_response = tflow.tflow()
    close_after(no_response)
    assert ADDED_CONNECTION_CLOSE not in no_response.metadata


class FakeRecorder:
    """What the drain asks of the recorder."""

    def __init__(self) -> None:
        self.inflight = InFlight()
        self.drain_timeout = 0.2
        self.recorded: list[tuple[str, str]] = []

    def record_unfinished(self, flow: tflow.flow.Flow, error: str) -> None:
        self.inflight.finish(flow)  # type: ignore[arg-type]
        self.recorded.append((flow.id, error))


def test_only_a_draining_proxy_marks_responses() -> None:
    drainer = Drainer(FakeRecorder())
    f = tflow.tflow(resp=True)
    drainer.responseheaders(f)
    drainer.response(f)
    assert ADDED_CONNECTION_CLOSE not in f.metadata
    drainer.draining = True
    streamed = tflow.tflow(resp=True)
    assert streamed.response is not None
    streamed.response.stream = True  # its headers are gone already
    drainer.response(streamed)
    assert ADDED_CONNECTION_CLOSE not in streamed.metadata
    drainer.response(f)
    assert f.metadata[ADDED_CONNECTION_CLOSE] is True


def test_at_its_end_the_unfinished_exchanges_are_recorded_cut_off() -> None:
    async def scenario() -> None:
        rec = FakeRecorder()
        drainer = Drainer(rec)
        with taddons.context(drainer):  # no proxy server: nothing to wait for
            flows = [tflow.tflow() for _ in range(2)]
            for f in flows:
                rec.inflight.requestheaders(f)
            started = time.monotonic()
            report = await drainer.drain(started + 5)
            assert time.monotonic() - started < 1
            assert rec.recorded == [(f.id, STOPPED_ERROR) for f in flows]
            assert (report.in_flight, report.cut_off, report.forced) == (2, 2, False)
            assert await drainer.drain(started + 5) is report  # once only
            await drainer.done()  # after a drain, done() has nothing left to do
            assert rec.recorded == [(f.id, STOPPED_ERROR) for f in flows]

    asyncio.run(scenario())


def test_done_drains_when_nothing_else_did_and_force_cuts_it_short() -> None:
    async def scenario() -> None:
        rec = FakeRecorder()
        drainer = Drainer(rec, install_signals=False)
        with taddons.context(drainer):
            rec.inflight.requestheaders(tflow.tflow())
            drainer.force()  # a signal before the drain began still counts
            await drainer.done()
            assert drainer.report is not None and drainer.report.forced
            assert drainer.report.cut_off == 1

    asyncio.run(scenario())


def test_concurrent_drains_share_one() -> None:
    async def scenario() -> None:
        rec = FakeRecorder()
        drainer = Drainer(rec)
        with taddons.context(drainer):
            rec.inflight.requestheaders(tflow.tflow())
            deadline = time.monotonic() + 5
            first, second = await asyncio.gather(drainer.drain(deadline), drainer.drain(deadline))
            assert first is second and len(rec.recorded) == 1

    asyncio.run(scenario())
