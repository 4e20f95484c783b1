"""Keeping the first bytes of a streamed body for the event, within a memory budget.

The recorder streams every body between client and app (mitmproxy's
`Message.stream`): mitmproxy hands each chunk to a `BodyCapture`, which passes
it on unchanged, counts its length and keeps a copy of the first
`max_body_bytes` for the event. Nothing else of the body stays in the process,
so a body costs at most its cap, whatever its size, and the client sees the
app's bytes as soon as the app sends them. All captures of a process draw from
one `CaptureBudget`: when the kept bytes of the exchanges in flight would pass
it, a body keeps what it got so far and is recorded cut (its length still
counted), and the live exchange goes on untouched. A capture gives its bytes
back (`release`) once its event was built, or when it is garbage collected.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

from trafficmirror.plumbing.logs import Throttle

logger = logging.getLogger(__name__)

#: Default of `--max-buffered-bytes`: body bytes held for all exchanges in flight.
DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024

BUDGET_CUT = Counter(
    "trafficmirror_recorder_budget_cut",
    "Bodies recorded cut short because the body bytes held for exchanges in flight "
    "reached --max-buffered-bytes (trafficmirror_max_buffered_bytes).",
)


class CaptureBudget:
    """The body bytes all exchanges in flight may keep at once (one per process).

    Used only from mitmproxy's event loop, so plain integers suffice.
    `cut` counts the bodies that got less than they wanted.
    """

    __slots__ = ("limit", "free", "cut", "_throttle")

    def __init__(self, limit: int = DEFAULT_MAX_BUFFERED_BYTES) -> None:
        self.limit = limit
        self.free = limit
        self.cut = 0
        self._throttle = Throttle()

    def count_cut(self) -> None:
        """One more body recorded cut for want of budget (counted, logged now and then)."""
        self.cut += 1
        BUDGET_CUT.inc()
        if self._throttle.allow():
            logger.warning(
                "trafficmirror: %d body bytes held for exchanges in flight reached "
                "max_buffered_bytes %d: recording bodies cut (%d so far)",
                self.held,
                self.limit,
                self.cut,
            )

    @property
    def held(self) -> int:
        """Bytes currently kept by captures of exchanges in flight."""
        return self.limit - self.free

    def resize(self, limit: int) -> None:
        """A new limit; bytes already held stay held (free may go below zero for a while)."""
        self.free += limit - self.limit
        self.limit = limit


class BodyCapture:
    """The stream callable of one request or response body (see the module docstring).

    mitmproxy calls it with every chunk and with b"" at the end; it returns
    the chunk itself. `length` counts every byte that passed; `kept` holds
    the first `cap` of them, fewer when the budget ran out (`budget_cut`).
    Whether the body was complete is for the caller to say (mitmproxy sets
    the message's `timestamp_end` when it ended).
    """

    __slots__ = ("kept", "length", "budget_cut", "_room", "_budget")

    def __init__(self, cap: int, budget: CaptureBudget) -> None:
        self.kept = bytearray()
        self.length = 0
        self.budget_cut = False
        self._room = cap
        self._budget = budget

    def __call__(self, chunk: bytes) -> bytes:
        self.length += len(chunk)
        if self._room:
            self._keep(chunk)
        return chunk

    def _keep(self, chunk: bytes) -> None:
        size = len(chunk)
        if not size:
            return
        want = size if size < self._room else self._room
        budget = self._budget
        if budget.free < want:
            # Keep what the budget still allows, then nothing more: later
            # bytes without the ones skipped would not be the body's prefix.
            want = max(budget.free, 0)
            self._room = want
            self.budget_cut = True
            budget.count_cut()
        budget.free -= want
        self._room -= want
        if want == size:
            self.kept += chunk
        elif want:
            self.kept += memoryview(chunk)[:want]

    @property
    def cut(self) -> bool:
        """True if fewer bytes were kept than passed."""
        return len(self.kept) < self.length

    def release(self) -> None:
        """Give the kept bytes back to the budget and keep nothing more (safe to repeat)."""
        held = len(self.kept)
        self._room = 0
        if held:
            self._budget.free += held
            self.kept = bytearray()

    def body(self) -> bytes:
        """The kept bytes."""
        return bytes(self.kept)

    def __del__(self) -> None:
        # A flow that ends without a response or error hook must not keep
        # its share of the budget for ever.
        if self.kept:
            self.release()


class QuietStreamLogs(logging.Filter):
    """Leaves out mitmproxy's "Streaming request to …"/"Streaming response from …" lines.

    mitmproxy logs one at INFO for every message it streams, and the recorder
    streams them all: under `mitmdump -s` that is a line (and its formatting)
    per body of every exchange, saying nothing the docs do not.
    """

    PREFIXES = ("Streaming request to ", "Streaming response from ")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        return not (isinstance(message, str) and message.startswith(self.PREFIXES))


def quiet_stream_logs() -> None:
    """Put `QuietStreamLogs` on mitmproxy's proxy server logger (once per process)."""
    server_logger = logging.getLogger("mitmproxy.proxy.server")
    if not any(isinstance(f, QuietStreamLogs) for f in server_logger.filters):
        server_logger.addFilter(QuietStreamLogs())
