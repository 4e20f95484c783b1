"""Requests that never reached the shadow: told apart, held by the guard, sent once it answers.

Real sockets: a closed port (refused), a listener whose accept queue is full (the
connect hangs: a connect timeout), a TLS server the client does not trust (the
handshake fails). Then the guard giving up on a shadow that stays down.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from pathlib import Path

import pytest

from replayer.models import OutgoingRequest, Response, Target
from replayer.sending import guard as guard_module
from replayer.sending.gate import Gate
from replayer.sending.guard import GuardOptions, State
from replayer.sending.http1 import Http1Transport
from replayer.sending.sender import MockTransport, NotSent, Sender
from tests.replayer.sending.test_http1 import Scripted, get, ok
from tests.support import free_port, self_signed_cert


def test_a_refused_request_is_held_and_sent_once_the_shadow_listens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(guard_module, "FIRST_BACKOFF", 0.05)
    port = free_port()

    async def main() -> None:
        gate = Gate(GuardOptions(max_backoff=1))
        sender = Sender(Http1Transport(), concurrency=8, timeout=5, gate=gate)
        futures = [sender.submit(get(port, f"/{n}"), n % 3) for n in range(12)]
        while gate.state is State.SENDING:
            await asyncio.sleep(0.005)
        assert gate.guard.backoffs == 1  # the first refusal tripped it, whatever the window
        await asyncio.sleep(0.2)  # a few probes fail meanwhile
        assert gate.guard.probes_failed >= 1
        assert not any(f.done() for f in futures)  # none is a result
        script = Scripted([ok(b"n%d" % n) for n in range(12)])
        server = await asyncio.start_server(script._serve, "127.0.0.1", port)
        async with server:
            outcomes = await asyncio.gather(*futures)
            await sender.aclose()
        assert all(o.ok for o in outcomes), [o.error for o in outcomes]
        assert len(script.requests) == 12  # each sent once: the refused attempts sent nothing
        assert gate.guard.backoffs == 1 and gate.state is State.SENDING

    asyncio.run(main())


def full_listener() -> tuple[socket.socket, list[socket.socket]]:
    """A listener that never accepts, its queue filled: a further connect hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(2):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    time.sleep(0.05)
    return listener, fillers


def test_a_connect_timeout_is_not_sent_and_an_error_only_without_the_guard() -> None:
    listener, fillers = full_listener()
    port = listener.getsockname()[1]

    async def main() -> None:
        # Without the guard: an error outcome that says the connect timed out.
        sender = Sender(Http1Transport(), timeout=0.3)
        outcome = await sender.submit(get(port, "/"), None)
        await sender.aclose()
        assert outcome.error == "connect timeout after 0.3s"
        # With it: held, not a result.
        gate = Gate(GuardOptions())
        guarded = Sender(Http1Transport(), timeout=0.3, gate=gate)
        future = guarded.submit(get(port, "/"), None)
        await asyncio.sleep(0.6)
        assert gate.state is not State.SENDING and not future.done()
        await guarded.aclose()  # closing cancels what is held
        assert future.cancelled() and guarded.in_flight == 0

    try:
        asyncio.run(main())
    finally:
        for s in (*fillers, listener):
            s.close()


def test_a_failed_tls_handshake_is_not_sent(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def main() -> None:
        script = Scripted([ok(b"never")], tls=server_tls)
        server = await script.start()
        target = Target.parse(f"https://127.0.0.1:{script.port}")
        request = OutgoingRequest("GET", target, "/", (("Host", target.host_port),), b"", "x")
        async with server:
            transport = Http1Transport()  # trusts the system's authorities only
            with pytest.raises(NotSent, match="SSLCertVerificationError"):
                await transport.send(request)
            await transport.aclose()
        assert script.requests == []

    asyncio.run(main())


def test_an_error_after_the_request_went_out_stays_a_result() -> None:
    async def main() -> None:
        async def reset(request: OutgoingRequest) -> Response:
            raise ConnectionResetError("reset by peer")

        gate = Gate(GuardOptions())
        sender = Sender(MockTransport(reset), gate=gate)
        outcome = await sender.submit(get(9, "/"), None)
        await sender.aclose()
        assert outcome.error == "ConnectionResetError: reset by peer"
        assert gate.state is State.SENDING  # one error in a window of 20 does not trip it

    asyncio.run(main())


def test_the_guard_gives_up_after_its_time_unless_the_shadow_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(guard_module, "FIRST_BACKOFF", 0.05)

    async def main(up_after: float | None) -> tuple[bool, list[float], float]:
        started = time.monotonic()
        calls: list[float] = []

        async def handler(request: OutgoingRequest) -> Response:
            if up_after is None or time.monotonic() - started < up_after:
                raise NotSent("ConnectionRefusedError: refused")
            return Response(200)

        gate = Gate(GuardOptions(give_up_after=0.4))
        gave_up_at: list[float] = []
        gate.on_give_up = lambda: gave_up_at.append(time.monotonic() - started)
        sender = Sender(MockTransport(handler), gate=gate)
        future = sender.submit(get(9, "/"), None)
        await asyncio.sleep(0.7)
        calls.append(float(future.done()))
        await sender.aclose()
        return gate.gave_up, gave_up_at, calls[0]

    gave_up, at, done = asyncio.run(main(None))
    assert gave_up and len(at) == 1 and 0.4 <= at[0] < 0.6 and not done
    gave_up, at, done = asyncio.run(main(0.1))  # back before the time ran out
    assert not gave_up and at == [] and done
