"""BodyCapture and CaptureBudget: what passes, what is kept, and the shared bound."""

from __future__ import annotations

import gc

from prometheus_client import REGISTRY

from recorder.capture import DEFAULT_MAX_BUFFERED_BYTES, BodyCapture, CaptureBudget


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
