"""The error-rate guard on the event loop: requests wait at the gate while it backs off.

`Gate` wraps an `ErrorRateGuard` (`replayer.sending.guard`, the decisions on an
injected clock) for the shadow's `Sender`: it holds waiting requests in the
order they came, lets one out as the probe when one is due, releases them all
when the shadow answers, and gives up after `GuardOptions.give_up_after`
(then `on_give_up` is called: `replay range` stops through it). Split from the
decision logic so that can be tested without an event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from replayer.sending.guard import GUARD_HELD, GUARD_STATE, ErrorRateGuard, GuardOptions, State

logger = logging.getLogger(__name__)


class Gate:
    """An `ErrorRateGuard` on the running event loop, for the shadow's `Sender`.

    `sending` is a plain attribute read before every request, so a guard that
    lets everything through costs one check. Waiting requests are released in
    the order they arrived; a failed probe goes back to the front.
    """

    def __init__(self, options: GuardOptions, clock: Callable[[], float] = time.monotonic) -> None:
        self.guard = ErrorRateGuard(options, clock)
        self.sending = True
        #: True once the guard backed off for `give_up_after` without an answer.
        self.gave_up = False
        #: Called (once) when it gives up: `replay range` stops through it.
        self.on_give_up: Callable[[], None] | None = None
        self._give_up_timer: asyncio.TimerHandle | None = None
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._resumed = asyncio.Event()
        self._resumed.set()
        GUARD_STATE.set(State.SENDING)
        GUARD_HELD.set(0)

    @property
    def state(self) -> State:
        return self.guard.state

    @property
    def held(self) -> int:
        """Requests waiting at the gate."""
        return len(self._waiters)

    async def admit(self, retry: bool = False) -> bool:
        """Wait until this request may go out; True if it is the probe.

        `retry`: the request is a failed probe going again (it keeps its place
        at the front).
        """
        if self.guard.state is State.SENDING:
            return False
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if retry:
            self._waiters.appendleft(future)
        else:
            self._waiters.append(future)
        GUARD_HELD.set(len(self._waiters))
        self._arm()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.result():
                self.guard.probe_abandoned()
                self._arm()
            else:
                try:
                    self._waiters.remove(future)
                except ValueError:
                    pass
                GUARD_HELD.set(len(self._waiters))
            raise

    def observe(
        self, ok: bool, probe: bool = False, error: str | None = None, unreached: bool = False
    ) -> bool:
        """Count an outcome; True: call `admit()` and send it again (`ErrorRateGuard.observe`).

        A failed probe is admitted with `retry=True` (first in line again).
        """
        before = self.guard.state
        retry = self.guard.observe(ok, probe, error, unreached)
        after = self.guard.state
        if after is State.SENDING and before is not State.SENDING:
            self._release_all()
        elif after is State.BACKING_OFF and before is State.SENDING:
            self.sending = False
            self._resumed.clear()
            limit = self.guard.options.give_up_after
            if limit is not None and self._give_up_timer is None:
                self._give_up_timer = asyncio.get_running_loop().call_later(limit, self._give_up)
        return retry

    def _give_up(self) -> None:
        self._give_up_timer = None
        if self.guard.state is State.SENDING:
            return
        self.gave_up = True
        logger.error(
            "guard: the shadow has not answered for %.1fs of backing off and %d failed probes "
            "(--give-up-after); giving up",
            self.guard.clock() - self.guard.tripped_at,
            self.guard.probes_failed,
        )
        if self.on_give_up is not None:
            self.on_give_up()

    def _arm(self) -> None:
        """Make sure the next probe goes out when it is due and someone waits."""
        if self.guard.state is not State.BACKING_OFF or not self._waiters:
            return
        if self._timer is not None:
            self._timer.cancel()
        due = self.guard.probe_due()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(due, 0.0), self._release_probe)

    def _release_probe(self) -> None:
        self._timer = None
        if self.guard.state is not State.BACKING_OFF:
            return
        if self.guard.probe_due() > 0:  # the delay grew meanwhile
            self._arm()
            return
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                self.guard.start_probe()
                future.set_result(True)
                break
        GUARD_HELD.set(len(self._waiters))

    def _release_all(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._give_up_timer is not None:
            self._give_up_timer.cancel()
            self._give_up_timer = None
        self.sending = True
        self._resumed.set()
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(False)
        GUARD_HELD.set(0)

    def abandoned(self) -> None:
        """The probe was cancelled on the wire (the sender is closing)."""
        self.guard.probe_abandoned()
        self._arm()

    async def wait_sending(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the guard to send again; True if it does."""
        try:
            async with asyncio.timeout(timeout):
                await self._resumed.wait()
        except TimeoutError:
            return False
        return True
