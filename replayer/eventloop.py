"""The event loop a replay runs on: uvloop where it is installed, else asyncio's own.

A good part of a replayed record's CPU cost is the event loop itself (waking
up on a socket, running the callbacks, writing), and uvloop (libuv, in C) does
that for less than asyncio's selector loop (bench/replay.py; the figures are
in the docs). It is a runtime dependency where it exists (Linux, macOS); the
replay falls back to asyncio's loop where it does not (Windows) or when
`TRAFFICMIRROR_EVENT_LOOP=asyncio` asks for it (to rule the loop out when
chasing a problem, or to measure the difference). What the replay relies on
works the same on both: `signal.signal` handlers (`replayer.stopping`) and
`run_coroutine_threadsafe` from the consumer's thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from trafficmirror.plumbing.errors import UsageError

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: Environment variable that picks the loop: `uvloop` (the default when installed) or `asyncio`.
ENV = "TRAFFICMIRROR_EVENT_LOOP"
CHOICES = ("uvloop", "asyncio")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the loop to use; None means asyncio's default loop.

    Raises `UsageError` when `TRAFFICMIRROR_EVENT_LOOP` names no known loop, or
    asks for uvloop where it is not installed.
    """
    wanted = os.environ.get(ENV, "").strip().lower()
    if wanted and wanted not in CHOICES:
        raise UsageError(f"{ENV}={wanted!r}: expected one of {', '.join(CHOICES)}")
    if wanted == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if wanted == "uvloop":
            raise UsageError(f"{ENV}=uvloop but uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name() -> str:
    """`uvloop` or `asyncio`: which loop `run()` would use now."""
    return "asyncio" if loop_factory() is None else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the loop `loop_factory()` picks."""
    try:
        factory = loop_factory()
    except UsageError:
        main.close()  # never awaited: say so quietly rather than with a RuntimeWarning
        raise
    logger.debug("event loop: %s", "asyncio" if factory is None else "uvloop")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
