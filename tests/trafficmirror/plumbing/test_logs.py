"""Throttle: one line per interval and key, however often the caller asks."""

from __future__ import annotations

import pytest

from trafficmirror.plumbing import logs
from trafficmirror.plumbing.logs import Throttle


def test_one_line_per_interval_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: now[0])
    throttle = Throttle(interval=30.0)
    assert throttle.allow("down") is True
    assert throttle.allow("down") is False
    assert throttle.allow("refused") is True  # another kind of error has its own clock
    now[0] += 29.9
    assert throttle.allow("down") is False
    now[0] += 0.1
    assert throttle.allow("down") is True  # and the clock restarts from here
    now[0] += 10
    assert throttle.allow("down") is False


def test_the_default_key_and_interval() -> None:
    throttle = Throttle()
    assert throttle.interval == logs.LOG_INTERVAL
    assert throttle.allow() is True
    assert throttle.allow() is False
