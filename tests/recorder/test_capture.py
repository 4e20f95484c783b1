"""BodyCapture and CaptureBudget: what passes, what is kept, the shared bound; the addon's hooks."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow
from prometheus_client import REGISTRY

from recorder.addon import Recorder
from recorder.capture import (
    DEFAULT_MAX_BUFFERED_BYTES,
    BodyCapture,
    CaptureBudget,
    QuietStreamLogs,
    quiet_stream_logs,
)
from tests.recorder.helpers import read_events
from tests.support import Kafka


def feed(capture: BodyCapture, chunks: list[bytes]) -> list[bytes]:
    """Call the capture as mitmproxy does: every chunk, then b"" at the end."""
    out = [capture(chunk) for chunk in chunks]
    assert capture(b"") == b""
    return out


def budget_cuts() -> float:
    return REGISTRY.get_sample_value("trafficmirror_recorder_budget_cut_total") or 0.0


def test_chunks_pass_unchanged_and_the_prefix_is_kept() -> None:
    budget = CaptureBudget(1000)
    capture = BodyCapture(10, budget)
    chunks = [b"abc", b"defghij", b"klmnop", b"", b"qrs"]
    out = feed(capture, chunks)
    # The very same objects go on to the peer: no copy on the way through.
    assert all(a is b for a, b in zip(out, chunks, strict=True))
    assert capture.body() == b"abcdefghij"
    assert capture.length == 19
    assert capture.cut and not capture.budget_cut
    assert budget.held == 10


def test_a_body_within_the_cap_is_kept_whole() -> None:
    capture = BodyCapture(100, CaptureBudget(1000))
    feed(capture, [b"x" * 40, b"y" * 60])
    assert capture.body() == b"x" * 40 + b"y" * 60
    assert (capture.length, capture.cut) == (100, False)


def test_a_zero_cap_keeps_nothing_but_counts() -> None:
    budget = CaptureBudget(1000)
    capture = BodyCapture(0, budget)
    feed(capture, [b"abc", b"de"])
    assert (capture.body(), capture.length, capture.cut) == (b"", 5, True)
    assert budget.held == 0 and budget.cut == 0


def test_the_budget_is_shared_and_cuts_further_bodies() -> None:
    before = budget_cuts()
    budget = CaptureBudget(25)
    first, second, third = (BodyCapture(10, budget) for _ in range(3))
    first(b"0123456789abc")
    second(b"0123456789")
    assert budget.free == 5
    third(b"ABCDEFG")  # wants 7, gets the 5 left
    third(b"HIJ")  # nothing more: later bytes would leave a gap
    assert third.body() == b"ABCDE"
    assert (third.length, third.cut, third.budget_cut) == (10, True, True)
    assert (first.budget_cut, second.budget_cut) == (False, False)
    assert budget.free == 0 and budget.held == 25
    assert budget.cut == 1
    assert budget_cuts() == before + 1


def test_release_gives_the_bytes_back_once_and_stops_keeping() -> None:
    budget = CaptureBudget(20)
    capture = BodyCapture(10, budget)
    capture(b"0123456789")
    assert budget.free == 10
    capture.release()
    capture.release()
    assert budget.free == 20
    capture(b"more")  # e.g. a request body still arriving after its event left
    assert budget.free == 20 and capture.body() == b""
    assert capture.length == 14


def test_an_empty_budget_cuts_every_body_with_its_length_counted() -> None:
    budget = CaptureBudget(0)
    capture = BodyCapture(10, budget)
    feed(capture, [b"abc", b"def"])
    assert (capture.body(), capture.length, capture.budget_cut) == (b"", 6, True)
    assert budget.cut == 1


def test_a_forgotten_capture_returns_its_share_when_collected() -> None:
    budget = CaptureBudget(100)
    capture = BodyCapture(50, budget)
    capture(b"x" * 50)
    assert budget.free == 50
    del capture
    gc.collect()
    assert budget.free == 100


def test_resize_keeps_what_is_held() -> None:
    budget = CaptureBudget(100)
    capture = BodyCapture(80, budget)
    capture(b"x" * 80)
    budget.resize(50)
    assert (budget.limit, budget.held, budget.free) == (50, 80, -30)
    other = BodyCapture(10, budget)
    other(b"y")
    assert other.budget_cut and other.body() == b""
    capture.release()
    assert budget.free == 50
    assert CaptureBudget().limit == DEFAULT_MAX_BUFFERED_BYTES == 64 * 1024 * 1024


# -- the addon's hooks -----------------------------------------------------------------


def in_loop(func: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh loop (taddons.context wants a running one)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(func(*args, **kwargs))

    return wrapper


def exchange(rec: Recorder) -> Any:
    """A flow through the recorder's header hooks, as mitmproxy calls them (bodies not kept)."""
    f = tflow.tflow()
    f.request.content = None
    rec.requestheaders(f)
    f.response = tflow.tresp(content=None)
    rec.responseheaders(f)
    return f


@in_loop
async def test_the_hooks_stream_every_body_and_capture_only_when_recording(
    kafka: Kafka, topic: str
) -> None:
    rec = Recorder()
    with taddons.context(rec) as tctx:
        idle = exchange(rec)
        # Not recording: bodies still stream, nothing is kept.
        assert idle.request.stream is True and idle.response.stream is True

        tctx.configure(
            rec,
            trafficmirror_bootstrap_servers=kafka.bootstrap_servers,
            trafficmirror_topic=topic,
            trafficmirror_max_body_bytes=4,
            trafficmirror_max_buffered_bytes=1000,
        )
        assert rec.budget.limit == 1000
        f = exchange(rec)
        assert isinstance(f.request.stream, BodyCapture)
        assert isinstance(f.response.stream, BodyCapture)
        f.request.stream(b"request body")
        f.response.stream(b"response body")
        assert rec.budget.held == 8
        rec.response(f)
        assert rec.budget.held == 0  # given back once the event is built

        replayed = tflow.tflow(resp=True)
        replayed.is_replay = "request"
        answered = tflow.tflow(resp=True)  # another addon answered it already
        rec.requestheaders(replayed)
        rec.requestheaders(answered)
        assert replayed.request.stream is False and answered.request.stream is False

        with pytest.raises(exceptions.OptionsError, match="max_buffered_bytes"):
            tctx.configure(rec, trafficmirror_max_buffered_bytes=-1)
    [(_, event)] = read_events(kafka.bootstrap_servers, topic, 1)
    assert (event["request"]["body"], event["request"]["body_length"]) == (b"requ", 12)
    assert (event["response"]["message"]["body"], event["response"]["message"]["body_length"]) == (
        b"resp",
        13,
    )
    assert event["request"]["body_truncated"] and event["response"]["message"]["body_truncated"]


def test_mitmproxys_per_stream_log_line_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    quiet_stream_logs()
    quiet_stream_logs()
    server_logger = logging.getLogger("mitmproxy.proxy.server")
    assert sum(isinstance(f, QuietStreamLogs) for f in server_logger.filters) == 1
    with caplog.at_level(logging.INFO, logger="mitmproxy.proxy.server"):
        server_logger.info("Streaming response from 127.0.0.1.")
        server_logger.info("Streaming request to 127.0.0.1.")
        server_logger.info("client connect")
    assert [r.getMessage() for r in caplog.records] == ["client connect"]
