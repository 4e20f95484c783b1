"""Graceful stop on SIGTERM/SIGINT, and the same from code.

The first signal asks for a graceful stop (stop reading, let in-flight
requests finish, commit); a second one asks to stop now. Handlers are
installed only when running in the main thread (Python allows nothing else),
and the previous handlers are restored on exit, so `run_worker()` and
`run_range()` can be called in-process, from any thread, and stopped through
the `threading.Event` they are given.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """A stop request: set by a signal, by `request()`, or by the caller's event."""

    def __init__(self, event: threading.Event | None = None, what: str = "finishing") -> None:
        self.event = event or threading.Event()
        self.what = what
        self.count = 0
        self.signal_name: str | None = None
        #: Why the code asked to stop (`request()`), None for a signal or the caller's event.
        self.reason: str | None = None
        #: The exit code the stop calls for, when the code asked for one (`request()`).
        self.exit_code: int | None = None
        self._previous: dict[int, Any] = {}

    def is_set(self) -> bool:
        """True once a stop was asked for."""
        return self.event.is_set()

    @property
    def forced(self) -> bool:
        """True after a second signal: stop without waiting any longer."""
        return self.count >= 2

    def request(self, reason: str | None = None, exit_code: int | None = None) -> None:
        """Ask for a graceful stop from code; `reason` and `exit_code` are for the summary
        (`replay range` says the reason, where to continue, and exits with the code)."""
        if not self.event.is_set():
            self.reason, self.exit_code = reason, exit_code
        self.event.set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.signal_name = signal.Signals(signum).name
        if self.count == 1:
            logger.info("%s: stopping, %s (again to stop now)", self.signal_name, self.what)
        else:
            logger.info("%s again: stopping now", self.signal_name)
        self.event.set()

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
