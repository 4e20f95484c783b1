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

`AiohttpTransport` sends exactly the prepared request: no User-Agent, Accept or
Accept-Encoding of its own, no Content-Type for bytes, no cookies, no
redirects, no decompression, the path as recorded (never re-quoted).
aiohttp is the client because it is the fastest here (see the README's figures).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, overload

import aiohttp
from aiohttp import hdrs
from yarl import URL

from replayer.guard import Gate
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


class _AnyMethod(set[str]):
    def __contains__(self, item: object) -> bool:
        return True


#: The exact header list of the request being built in this task (see `_ExactRequest`).
_EXACT_HEADERS: ContextVar[Sequence[tuple[str, str]] | None] = ContextVar(
    "trafficmirror_exact_headers", default=None
)


class _ExactRequest(aiohttp.ClientRequest):
    """An aiohttp request that carries exactly the prepared header list.

    Two aiohttp behaviours break a faithful replay: `ClientSession` merges
    header names case-sensitively, so a recorded `X-Tag: a` followed by
    `x-tag: b` would lose the first; and a bodiless POST/PUT/DELETE gets a
    `Content-Length: 0` the client never sent. So the header list is taken
    from `_EXACT_HEADERS` (set by the transport around the call) and every
    method is treated as one that may go without a body (a recorded
    Content-Length is still sent).
    """

    GET_METHODS = _AnyMethod()

    def update_headers(self, headers: Any) -> None:
        exact = _EXACT_HEADERS.get()
        if exact is None:
            super().update_headers(headers)
            return
        super().update_headers(None)  # the Host header of the URL
        for name, value in exact:
            if name.lower() == "host":
                self.headers[hdrs.HOST] = value
            else:
                self.headers.add(name, value)


#: Headers aiohttp would add on its own; the shadow must see only recorded ones.
_AUTO_HEADERS = (hdrs.USER_AGENT, hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.CONTENT_TYPE)


class AiohttpTransport:
    """The real transport: an aiohttp session with a keep-alive connection pool.

    `limit` caps open connections (the sender's concurrency is the real bound).
    Created lazily inside the running event loop.
    """

    def __init__(self, limit: int = 100) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=0, ttl_dns_cache=300)
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=_AUTO_HEADERS,
            request_class=_ExactRequest,
            timeout=aiohttp.ClientTimeout(total=None),  # the sender enforces the timeout
            trust_env=False,
            # Recorded responses may carry big headers; never fail on them.
            max_line_size=65536,
            max_field_size=65536,
        )

    async def send(self, request: OutgoingRequest) -> Response:
        if self._session is None:
            self._session = self._open()
        token = _EXACT_HEADERS.set(request.headers)
        try:
            async with self._session.request(
                request.method,
                URL(request.url, encoded=True),
                data=request.body or None,
                allow_redirects=False,
                compress=None,
            ) as response:
                body = await response.read()
                return Response(
                    status=response.status,
                    headers=tuple(
                        (k.decode("latin-1"), v.decode("latin-1"))
                        for k, v in response.raw_headers
                    ),
                    body=body,
                    reason=response.reason or "",
                )
        finally:
            _EXACT_HEADERS.reset(token)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


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
    caller bounds it (the worker pauses Kafka partitions). With a `gate`
    (`replayer.guard`), requests wait while the gate backs off from a failing
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
        #: The error-rate guard (`replayer.guard`): asked before each request, told each outcome.
        self.gate = gate
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
            gate = self.gate
            if gate is None:
                outcome = await self._attempt(request)
            else:
                outcome = await self._guarded(gate, request)
            if not future.done():
                future.set_result(outcome)
        finally:
            if not future.done():
                future.cancel()
            self._done()

    async def _guarded(self, gate: Gate, request: OutgoingRequest) -> Outcome:
        """Wait at the gate while it backs off (outside the slot and the timeout); a failed
        probe is sent again (the same request, so its connection's order holds)."""
        retry = False
        while True:
            probe = False
            if not gate.sending:
                probe = await gate.admit(retry)
            try:
                outcome = await self._attempt(request, None if probe else gate)
            except asyncio.CancelledError:
                if probe:
                    gate.abandoned()
                raise
            if outcome is None:
                continue  # the gate closed while this one waited for a slot
            retry = gate.observe(outcome.ok, probe, outcome.error)
            if not retry:
                return outcome

    @overload
    async def _attempt(self, request: OutgoingRequest, gate: None = None) -> Outcome: ...

    @overload
    async def _attempt(self, request: OutgoingRequest, gate: Gate | None) -> Outcome | None: ...

    async def _attempt(self, request: OutgoingRequest, gate: Gate | None = None) -> Outcome | None:
        """Send once; None (nothing sent) if `gate` stopped sending while waiting for a slot."""
        async with self._slots:
            if gate is not None and not gate.sending:
                return None
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
            return Outcome(request, response, error, sent_at, time.perf_counter() - started)

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
