"""Send requests to the shadow: bounded concurrency, each recorded connection in order.

`Sender` is the scheduler, a `Transport` does the I/O (like httpx's transports,
so tests plug in a handler with `MockTransport`):

* at most `concurrency` requests are on the wire at once;
* requests with the same key (the Kafka message key, i.e. the recorded client
  connection) are sent one after another, each waiting for the previous one's
  response, because that is how they reached production: a keep-alive
  connection carries one request at a time, and a later request may depend on
  an earlier one (create, then update). Different keys run concurrently. A
  waiting request does not hold a concurrency slot;
* a timeout or a connection error is an `Outcome` with `error` set, never an
  exception: one broken request must not stop the replay.

The transports that send exactly the prepared request (no header of their own,
no cookies, no redirects, no decompression, the path as recorded) are
`replayer.http1.Http1Transport`, which the worker and `replay range` use, and
`AiohttpTransport` (`replayer.aiohttp_transport`, imported from here on first
use so that a replay does not pay for loading aiohttp).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from replayer.request import OutgoingRequest


@dataclass(frozen=True, slots=True)
class Response:
    """What the shadow answered."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of sending one request: a response, or why there is none."""

    request: OutgoingRequest
    response: Response | None
    error: str | None
    sent_at: float  # time.time() when it went out
    latency: float  # seconds until the response was read (or the error)

    @property
    def ok(self) -> bool:
        """True when the shadow answered (any status: comparing it is a later stage)."""
        return self.response is not None


class Transport(Protocol):
    """Sends one request and returns the shadow's response.

    May raise anything on failure (the sender turns it into an error outcome);
    the sender applies the timeout.
    """

    async def send(self, request: OutgoingRequest) -> Response: ...

    async def aclose(self) -> None: ...


Handler = Callable[[OutgoingRequest], Response | Awaitable[Response]]


def __getattr__(name: str) -> Any:
    if name == "AiohttpTransport":
        from replayer.aiohttp_transport import AiohttpTransport

        return AiohttpTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Sender:
    """Sends requests through a transport, `concurrency` at a time, in order per key.

    Use it from one event loop. `submit()` never blocks: it queues the request
    and returns a future of its `Outcome`. `in_flight` counts submitted requests
    that have no outcome yet (queued behind their key, or on the wire); the
    caller bounds it (the worker pauses Kafka partitions).
    """

    def __init__(self, transport: Transport, concurrency: int = 64, timeout: float = 30.0) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.transport = transport
        self.concurrency = concurrency
        self.timeout = timeout
        self._slots = asyncio.Semaphore(concurrency)
        self._chains: dict[Hashable, deque[tuple[OutgoingRequest, asyncio.Future[Outcome]]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
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

    def submit(self, request: OutgoingRequest, key: Hashable | None) -> asyncio.Future[Outcome]:
        """Queue `request`; same-key requests go out in submission order, one at a time.

        `key=None` means no ordering constraint.
        """
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._in_flight += 1
        self._idle.clear()
        if key is None:
            self._spawn(self._send_one(request, future))
            return future
        chain = self._chains.get(key)
        if chain is None:
            chain = deque()
            self._chains[key] = chain
            chain.append((request, future))
            self._spawn(self._run_chain(key, chain))
        else:
            chain.append((request, future))
        return future

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_chain(
        self, key: Hashable, chain: deque[tuple[OutgoingRequest, asyncio.Future[Outcome]]]
    ) -> None:
        try:
            while chain:
                request, future = chain[0]
                await self._send_one(request, future)
                chain.popleft()
        finally:
            # No await between the empty check and this: a submit() in between is impossible.
            if self._chains.get(key) is chain:
                del self._chains[key]
            for _, future in chain:  # only when cancelled: nothing waits for these any more
                if not future.done():
                    future.cancel()
                    self._done()
            chain.clear()

    async def _send_one(self, request: OutgoingRequest, future: asyncio.Future[Outcome]) -> None:
        try:
            async with self._slots:
                self._active += 1
                sent_at = time.time()
                started = time.perf_counter()
                response: Response | None = None
                error: str | None = None
                try:
                    async with asyncio.timeout(self.timeout):
                        response = await self.transport.send(request)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a shadow failure is an outcome, not a crash
                    error = describe_error(exc, self.timeout)
                finally:
                    self._active -= 1
                outcome = Outcome(request, response, error, sent_at, time.perf_counter() - started)
            if not future.done():
                future.set_result(outcome)
        finally:
            if not future.done():
                future.cancel()
            self._done()

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
        """Cancel whatever is still queued or on the wire, then close the transport."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.transport.aclose()
