"""One `Sender` per target: the shadow's, and with `--baseline` the baseline's.

Each target has its own concurrency cap, timeout and connection pool, so a slow
or dead baseline cannot take the shadow's slots, and the other way round. Only
the shadow's sender has the error-rate guard (`replayer.sending.guard`): the baseline
is a copy of production, kept for comparing, not the service under test.

The worker and `replay range` bound the records they hold by `in_flight`, the
requests of both senders without an outcome: a record is handled when both of
its requests are, so this counts every record held at least once.
"""

from __future__ import annotations

import asyncio

from replayer.sending.guard import Gate, GuardOptions
from replayer.sending.http1 import Http1Transport
from replayer.sending.sender import Sender, Transport


class Senders:
    """The shadow's sender, the baseline's (or None), and the shadow's guard (or None)."""

    def __init__(self, shadow: Sender, baseline: Sender | None = None) -> None:
        self.shadow = shadow
        self.baseline = baseline
        self.gate = shadow.gate

    @classmethod
    def open(
        cls,
        *,
        transport: Transport | None,
        concurrency: int,
        timeout: float,
        baseline: bool,
        options: GuardOptions | None = None,
    ) -> Senders:
        """Senders for the shadow (and the baseline when `baseline`); call inside the loop.

        `transport` None: an HTTP/1.1 connection pool per target, sized to its cap; a given
        transport (tests) serves both.
        """
        options = options or GuardOptions()
        gate = Gate(options) if options.enabled else None
        shadow = Sender(
            transport or Http1Transport(limit=concurrency),
            concurrency=concurrency,
            timeout=timeout,
            gate=gate,
        )
        if not baseline:
            return cls(shadow)
        cap = options.baseline_concurrency or concurrency
        other = Sender(
            transport or Http1Transport(limit=cap),
            concurrency=cap,
            timeout=options.baseline_timeout or timeout,
        )
        return cls(shadow, other)

    @property
    def concurrency(self) -> int:
        """The caps of both targets together."""
        return self.shadow.concurrency + (self.baseline.concurrency if self.baseline else 0)

    @property
    def in_flight(self) -> int:
        """Requests of both targets without an outcome yet."""
        if self.baseline is None:
            return self.shadow.in_flight
        return self.shadow.in_flight + self.baseline.in_flight

    @property
    def holding(self) -> bool:
        """True while the shadow's guard backs off (no new request goes out)."""
        return self.gate is not None and not self.gate.sending

    async def wait_sending(self, timeout: float) -> bool:
        """Wait up to `timeout` for the guard to send again; True when it does (or has none)."""
        if self.gate is None:
            return True
        return await self.gate.wait_sending(timeout)

    async def wait_for_room(self, limit: int, timeout: float) -> bool:
        """Wait until fewer than `limit` requests are in flight; False if `timeout` passed."""
        if self.baseline is None:
            return await self.shadow.wait_for_room(limit, timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.in_flight >= limit:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            # Each waits for one of its own requests to finish: the first to do so wins.
            waits = [
                asyncio.ensure_future(s.wait_for_room(s.in_flight, remaining))
                for s in (self.shadow, self.baseline)
                if s.in_flight
            ]
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        return True

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until nothing is in flight; False if `timeout` seconds passed first."""
        if self.baseline is None:
            return await self.shadow.drain(timeout)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        for sender in (self.shadow, self.baseline):
            left = None if deadline is None else max(deadline - loop.time(), 0.0)
            if not await sender.drain(left):
                return False
        return True

    async def aclose(self) -> None:
        """Cancel what is still queued or on the wire and close the transports."""
        await self.shadow.aclose()
        if self.baseline is not None:
            await self.baseline.aclose()
