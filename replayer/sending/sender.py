"""Send requests to the shadow: bounded concurrency, each recorded connection in order.

`Sender` is the scheduler, a `Transport` does the I/O (like httpx's transports,
so tests plug in a handler with `MockTransport`; the real one is
`replayer.sending.http1.Http1Transport`). At most `concurrency` requests are on
the wire at once. Requests with the same key (the Kafka message key, i.e. the
recorded client connection) go one after another, each waiting for the
previous one's response, because that is how they reached production (a
keep-alive connection carries one request at a time, and a later request may
depend on an earlier one); different keys run concurrently. A timeout or a
connection error is an `Outcome` with `error` set, never an exception. A
transport raises `NotSent` when the request never reached the target; with
the error-rate guard such a request waits at the gate and goes again once the
shadow answers (it is no result), without one it is an error outcome too.
A request may come with `Hooks` (the transforming stage): `before()` runs when
its turn comes, so it sees the answers to the earlier requests of its key, and
may replace the request or skip it (`Skipped` becomes the future's exception);
`after()` learns the outcome before the next request of that key starts.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Protocol

from replayer.models import Outcome, OutgoingRequest, Response
from replayer.sending.gate import Gate


class NotSent(ConnectionError):
    """The request never reached the target: its connection could not be opened.

    Refused, unreachable, a failed name look-up, a TLS handshake that failed,
    or a connect cut short by the timeout. Nothing was written, so sending it
    again later cannot send it twice. The message describes the cause.
    """


class Transport(Protocol):
    """Sends one request and returns the shadow's response.

    May raise anything on failure (the sender turns it into an error outcome);
    `NotSent` when nothing was written (a cancellation while connecting, too:
    the sender tells its timeout from other cancellations). The sender applies
    the timeout.
    """

    async def send(self, request: OutgoingRequest) -> Response: ...

    async def aclose(self) -> None: ...


Handler = Callable[[OutgoingRequest], Response | Awaitable[Response]]


class Hooks(Protocol):
    """What runs around one request (see the module doc); `replayer.transforming` makes them."""

    async def before(self, request: OutgoingRequest) -> OutgoingRequest: ...

    def after(self, outcome: Outcome) -> None: ...


class MockTransport:
    """A transport that calls `handler` instead of the network (sync or async)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def send(self, request: OutgoingRequest) -> Response:
        result = self.handler(request)
        if inspect.isawaitable(result):
            return await result
        return result

    async def aclose(self) -> None:
        pass


def describe_error(exc: BaseException, timeout: float) -> str:
    """One short line for an error outcome."""
    if isinstance(exc, TimeoutError):
        return f"timeout after {timeout:g}s"
    if isinstance(exc, NotSent):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_Chain = deque[tuple[OutgoingRequest, "asyncio.Future[Outcome]", Hooks | None]]


class Sender:
    """Sends requests through a transport, `concurrency` at a time, in order per key.

    Use it from one event loop. `submit()` never blocks: it queues the request
    and returns a future of its `Outcome`. `in_flight` counts submitted requests
    that have no outcome yet (queued behind their key, or on the wire); the
    caller bounds it (the worker pauses Kafka partitions). With a `gate`
    (`replayer.sending.guard`), requests wait while the gate backs off from a failing
    target, and a failed probe is sent again.
    """

    def __init__(
        self,
        transport: Transport,
        concurrency: int = 64,
        timeout: float = 30.0,
        gate: Gate | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.transport = transport
        self.concurrency = concurrency
        self.timeout = timeout
        #: The error-rate guard (`sending.guard`): asked before each request, told each outcome.
        self.gate = gate
        # Chains of same-key requests, oldest first; a chain exists while it has
        # requests. `_ready` holds the chains whose head may go now; each of at
        # most `concurrency` long-lived worker tasks takes one, sends its head,
        # and puts it back at the end if more follow. Workers instead of a task
        # per chain and a semaphore: a task costs more than the rest of the
        # sender's work for one request (bench/replay.py).
        self._chains: dict[Hashable, _Chain] = {}
        self._ready: deque[tuple[Hashable | None, _Chain]] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._idle_workers: deque[asyncio.Future[None]] = deque()
        self._closed = False
        # Timeouts: one timer for all requests instead of one each (asyncio.timeout
        # costs a timer per request). The worker on a request and when it expires
        # (loop time); the timer fires at the earliest, cancels what is due and
        # is set again for the earliest left.
        self._deadlines: dict[asyncio.Task[None], float] = {}
        self._expired: set[asyncio.Task[None]] = set()
        # The timer's handle and its time (kept here: uvloop answers `call_at` with a
        # plain `Handle`, which has no `when()`, when the time has already come).
        self._watchdog: asyncio.Handle | None = None
        self._watchdog_at = 0.0
        self._in_flight = 0
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._progress = asyncio.Event()

    @property
    def in_flight(self) -> int:
        """Submitted requests without an outcome yet."""
        return self._in_flight

    @property
    def active(self) -> int:
        """Requests on the wire right now (at most `concurrency`)."""
        return self._active

    def submit(
        self, request: OutgoingRequest, key: Hashable | None, hooks: Hooks | None = None
    ) -> asyncio.Future[Outcome]:
        """Queue `request`; same-key requests go out in submission order, one at a time.

        `key=None` means no ordering constraint. With `hooks`, the future raises
        what `hooks.before()` raised (it skipped the request: nothing was sent).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        if self._closed:
            future.cancel()
            return future
        self._in_flight += 1
        self._idle.clear()
        if key is None:
            self._ready.append((None, deque(((request, future, hooks),))))
        else:
            chain = self._chains.get(key)
            if chain is not None:
                chain.append((request, future, hooks))  # goes when the ones before it are done
                return future
            chain = self._chains[key] = deque(((request, future, hooks),))
            self._ready.append((key, chain))
        self._dispatch(loop)
        return future

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make sure a worker will take the ready chain just queued."""
        while self._idle_workers:
            waiter = self._idle_workers.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        if len(self._workers) < self.concurrency:
            task = loop.create_task(self._work())
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def _work(self) -> None:
        ready = self._ready
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always run as a task
            raise RuntimeError("Sender workers run as tasks")
        while True:
            if not ready:
                waiter: asyncio.Future[None] = loop.create_future()
                self._idle_workers.append(waiter)
                await waiter
                continue
            key, chain = ready.popleft()
            request, future, hooks = chain[0]
            await self._send_one(request, future, loop, task, hooks)
            chain.popleft()
            if chain:
                ready.append((key, chain))  # the next of that key, after the others waiting
            elif key is not None:
                # No await between the empty check and this: a submit() in between is impossible.
                del self._chains[key]

    async def _send_one(
        self,
        request: OutgoingRequest,
        future: asyncio.Future[Outcome],
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[None],
        hooks: Hooks | None = None,
    ) -> None:
        try:
            if hooks is not None:
                try:
                    request = await hooks.before(request)
                except Exception as exc:  # skipped (or a failed step): nothing is sent
                    if not future.done():
                        future.set_exception(exc)
                    return
            gate = self.gate
            if gate is None:
                outcome, _ = await self._attempt(request, loop, task)
            else:
                outcome = await self._guarded(gate, request, loop, task)
            if hooks is not None:
                hooks.after(outcome)  # before the next request of this key is prepared
            if not future.done():
                future.set_result(outcome)
        finally:
            if not future.done():
                future.cancel()
            self._done()

    async def _guarded(
        self,
        gate: Gate,
        request: OutgoingRequest,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[None],
    ) -> Outcome:
        """Wait at the gate while it backs off (outside the timeout); a failed probe is
        sent again (the same request, so its connection's order holds)."""
        front = False
        while True:
            probe = False
            if not gate.sending:
                probe = await gate.admit(front)
            try:
                outcome, reached = await self._attempt(request, loop, task)
            except asyncio.CancelledError:
                if probe:
                    gate.abandoned()
                raise
            if not gate.observe(outcome.ok, probe, outcome.error, unreached=not reached):
                return outcome
            front = probe  # a failed probe stays first in line; others queue again

    async def _attempt(
        self,
        request: OutgoingRequest,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[None],
    ) -> tuple[Outcome, bool]:
        """Send once, within the timeout; the outcome, and False if it never reached the target."""
        self._active += 1
        sent_at = time.time()
        started = time.perf_counter()
        response: Response | None = None
        error: str | None = None
        reached = True
        deadline = loop.time() + self.timeout
        self._deadlines[task] = deadline
        if self._watchdog is None or deadline < self._watchdog_at:
            self._arm(loop)
        try:
            response = await self.transport.send(request)
        except asyncio.CancelledError:
            if not self._timed_out(task):
                raise
            error = describe_error(TimeoutError(), self.timeout)
        except NotSent as exc:
            reached = False
            if task in self._expired:  # the timeout cut the connect short
                error = f"connect timeout after {self.timeout:g}s"
            else:
                error = describe_error(exc, self.timeout)
        except Exception as exc:  # a shadow failure is an outcome, not a crash
            error = describe_error(exc, self.timeout)
        finally:
            self._active -= 1
            del self._deadlines[task]
            if task in self._expired:  # expired, but the send ended another way
                self._expired.discard(task)
                task.uncancel()
        if task.cancelling():  # cancelled from outside (aclose) while the transport said NotSent
            raise asyncio.CancelledError
        return Outcome(request, response, error, sent_at, time.perf_counter() - started), reached

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._deadlines:
            self._watchdog_at = min(self._deadlines.values())
            self._watchdog = loop.call_at(self._watchdog_at, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._watchdog = None
        now = loop.time()
        for task, deadline in list(self._deadlines.items()):
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        self._arm(loop)

    def _timed_out(self, task: asyncio.Task[None]) -> bool:
        """True if the CancelledError in `task` is the timeout's, and only the timeout's."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return task.uncancel() == 0  # also cancelled from outside (aclose): not a timeout

    def _done(self) -> None:
        self._in_flight -= 1
        self._progress.set()
        if self._in_flight == 0:
            self._idle.set()

    async def wait_for_room(self, limit: int, timeout: float) -> bool:
        """Wait until fewer than `limit` requests are in flight; False if `timeout` passed."""
        try:
            async with asyncio.timeout(timeout):
                while self._in_flight >= limit:
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            return False
        return True

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until nothing is in flight; False if `timeout` seconds passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        """Cancel whatever is still queued or on the wire, then close the transport.

        Requests submitted afterwards are cancelled at once.
        """
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        tasks = list(self._workers)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        # What was queued behind its key, or waiting for a worker: nothing waits for it now.
        # (The head of a chain a worker was sending has been cancelled with the worker.)
        chains = [chain for _, chain in self._ready] + list(self._chains.values())
        self._ready.clear()
        self._chains.clear()
        for chain in chains:
            for _, future, _ in chain:
                if not future.done():
                    future.cancel()
                    self._done()
            chain.clear()
        await self.transport.aclose()
