"""Logging shared by every command: the set-up (one line per event, on stderr), a throttle,
and the adapter that routes librdkafka's own log lines into `logging`.

`Throttle` keeps a repeated warning (a broker that stays down, a record that
keeps failing) to one line per interval and key, so a bad hour does not fill
the log; the caller keeps counting in its metrics what the log leaves out. It
is the one rate limit for log lines: the recorder's addon, the producers, the
Kafka clients' error callbacks and the session watcher all use it.
"""

from __future__ import annotations

import logging
import sys
import threading
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
    """Says whether a line may be logged now: at most one per `interval` seconds per key.

    Safe to share between threads (librdkafka's callbacks and the caller's
    thread report the same kinds of error).
    """

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: Hashable = None) -> bool:
        """True (and the key's clock restarts) when `key` was not allowed in the last interval."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                return False
            self._last[key] = now
            return True


class DebugLog:
    """What confluent_kafka needs of a logger (`.log()`): librdkafka's lines at debug level.

    librdkafka would print its own lines on stderr, several per failure; its
    errors also reach the client's error callback, which reports them readably.
    """

    def __init__(self, target: logging.Logger) -> None:
        self._target = target

    def log(self, level: int, msg: str, *args: object) -> None:
        self._target.debug(msg, *args)
