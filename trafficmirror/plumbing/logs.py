"""Logging shared by every command: the set-up (one line per event, on stderr) and a throttle.

`Throttle` keeps a repeated warning (a broker that stays down, a record that
keeps failing) to one line per interval and key, so a bad hour does not fill
the log; the caller keeps counting in its metrics what the log leaves out.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Hashable

#: Seconds between two lines of the same repeated warning.
LOG_INTERVAL = 30.0


def setup(verbose: int = 0, quiet: bool = False) -> None:
    """Configure the root logger once; `-v` shows debug output, `-q` only warnings."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party loggers that are chatty at INFO.
    for name in ("aiohttp.access", "mitmproxy", "asyncio", "passlib", "hpack", "h2"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


class Throttle:
    """Says whether a line may be logged now: at most one per `interval` seconds per key."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[Hashable, float] = {}

    def allow(self, key: Hashable = None) -> bool:
        """True (and the key's clock restarts) when `key` was not allowed in the last interval."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        return True
