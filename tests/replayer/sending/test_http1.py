"""Http1Transport against a real TCP server that answers with scripted bytes.

Each test's server reads whole requests (head plus Content-Length body) and
writes the next scripted answer, so response framing, keep-alive reuse and
failure handling are checked on real sockets. The exact request bytes are
checked in test_sender.py.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from replayer.models import Outcome, OutgoingRequest, Target
from replayer.sending.http1 import Http1Transport
from replayer.sending.sender import Sender
from tests.support import self_signed_cert

Answer = bytes | Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Scripted:
    """A server answering the n-th request (over all connections) with `answers[n]`."""

    answers: list[Answer]
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    port: int = 0
    tls: ssl.SSLContext | None = None

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                answer = self.answers[len(self.requests) - 1]
                if isinstance(answer, bytes):
                    writer.write(answer)
                    await writer.drain()
                else:
                    await answer(writer)
                if writer.is_closing():
                    return
        finally:
            self.open_now -= 1
            writer.close()


def get(port: int, path: str = "/", method: str = "GET", **kw: object) -> OutgoingRequest:
    target = Target.parse(f"http://127.0.0.1:{port}")
    headers = kw.get("headers", (("Host", target.host_port),))
    return OutgoingRequest(method, target, path, headers, b"", path)  # type: ignore[arg-type]


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def run(
    script: Scripted,
    requests: Callable[[int], list[OutgoingRequest]],
    *,
    timeout: float = 5.0,
    limit: int = 8,
    keys: Callable[[int], object] = lambda i: "conn",
) -> list[Outcome]:
    server = await script.start()
    async with server:
        sender = Sender(Http1Transport(limit=limit), concurrency=8, timeout=timeout)
        futures = [
            sender.submit(r, keys(i))  # type: ignore[arg-type]
            for i, r in enumerate(requests(script.port))
        ]
        outcomes = await asyncio.gather(*futures)
        await sender.aclose()
    return list(outcomes)


def bodies(outcomes: list[Outcome]) -> list[bytes | str | None]:
    return [o.response.body if o.response else o.error for o in outcomes]


def test_keep_alive_reuses_one_connection_and_keeps_the_headers_as_received() -> None:
    script = Scripted([ok(b"a", b"X-One: 1\r\nx-one:  2 \r\n"), ok(b"bb"), ok(b"")])
    outcomes = asyncio.run(run(script, lambda p: [get(p, "/1"), get(p, "/2"), get(p, "/3")]))
    assert bodies(outcomes) == [b"a", b"bb", b""]
    assert script.connections == 1
    first = outcomes[0].response
    assert first is not None and first.reason == "OK"
    assert first.headers == (("Content-Length", "1"), ("X-One", "1"), ("x-one", "2"))


def test_chunked_bodies_with_extensions_and_trailers_then_reuse() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    script = Scripted([chunked, ok(b"next")])
    outcomes = asyncio.run(run(script, lambda p: [get(p, "/c"), get(p, "/n")]))
    assert bodies(outcomes) == [b"Wikipedia in \r\n\r\nchunks.", b"next"]
    assert script.connections == 1


def test_responses_split_into_single_bytes_are_reassembled() -> None:
    async def trickle(writer: asyncio.StreamWriter) -> None:
        for byte in ok(b"slow body"):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0)

    script = Scripted([trickle, ok(b"after")])
    outcomes = asyncio.run(run(script, lambda p: [get(p, "/t"), get(p, "/a")]))
    assert bodies(outcomes) == [b"slow body", b"after"]


def test_no_body_for_head_204_304_and_interim_100_is_skipped() -> None:
    script = Scripted(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",  # HEAD: length of a GET
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"final"),
        ]
    )
    outcomes = asyncio.run(
        run(
            script,
            lambda p: [get(p, "/h", "HEAD"), get(p, "/204"), get(p, "/304"), get(p, "/100")],
        )
    )
    assert [o.response.status if o.response else o.error for o in outcomes] == [200, 204, 304, 200]
    assert bodies(outcomes) == [b"", b"", b"", b"final"]
    assert script.connections == 1


def test_body_until_close_and_connection_close_open_new_connections() -> None:
    async def until_close(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 200 OK\r\n\r\neverything until the end")
        await writer.drain()
        writer.close()

    script = Scripted([until_close, ok(b"closing", b"Connection: close\r\n"), ok(b"third")])
    outcomes = asyncio.run(run(script, lambda p: [get(p, "/1"), get(p, "/2"), get(p, "/3")]))
    assert bodies(outcomes) == [b"everything until the end", b"closing", b"third"]
    assert script.connections == 3


def test_a_server_closing_mid_body_is_an_error_and_the_next_request_still_goes() -> None:
    async def cut(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()
        writer.close()

    script = Scripted([cut, ok(b"fine")])
    outcomes = asyncio.run(run(script, lambda p: [get(p, "/cut"), get(p, "/fine")]))
    assert "ServerDisconnected" in str(outcomes[0].error)
    assert bodies(outcomes)[1] == b"fine"


def test_a_timed_out_request_drops_its_connection_so_its_late_answer_reaches_no_one() -> None:
    async def late(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.5)
        writer.write(ok(b"late"))

    script = Scripted([late, ok(b"on time")])
    outcomes = asyncio.run(run(script, lambda p: [get(p, "/late"), get(p, "/next")], timeout=0.2))
    assert outcomes[0].error == "timeout after 0.2s"
    assert bodies(outcomes)[1] == b"on time"
    assert script.connections == 2


def test_bad_responses_are_errors() -> None:
    script = Scripted([b"SPDY/3 200 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"])
    outcomes = asyncio.run(run(script, lambda p: [get(p, "/1"), get(p, "/2")]))
    assert "BadResponse: bad status line" in str(outcomes[0].error)
    assert "BadResponse: bad Content-Length" in str(outcomes[1].error)


def test_a_header_with_cr_or_lf_is_not_sent() -> None:
    script = Scripted([ok(b"never")])
    outcomes = asyncio.run(
        run(
            script,
            lambda p: [get(p, "/x", headers=(("Host", "h"), ("X-Evil", "a\r\nInjected: 1")))],
        )
    )
    assert "CR or LF" in str(outcomes[0].error)
    assert script.requests == []


@pytest.mark.parametrize("limit", [1, 2])
def test_at_most_limit_connections_are_open(limit: int) -> None:
    async def slow(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.05)
        writer.write(ok(b"s"))

    script = Scripted([slow] * 6)
    outcomes = asyncio.run(
        run(script, lambda p: [get(p, f"/{i}") for i in range(6)], limit=limit, keys=lambda i: i)
    )
    assert bodies(outcomes) == [b"s"] * 6
    assert script.most_open == limit


def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    async def answer_then_close(writer: asyncio.StreamWriter) -> None:
        writer.write(ok(b"first"))
        await writer.drain()
        writer.close()  # keep-alive was implied; the server drops it anyway

    async def main() -> tuple[list[Outcome], int]:
        script = Scripted([answer_then_close, ok(b"second")])
        server = await script.start()
        async with server:
            sender = Sender(Http1Transport(), timeout=5)
            first = await sender.submit(get(script.port, "/1"), "conn")
            await asyncio.sleep(0.1)  # the close reaches the client
            second = await sender.submit(get(script.port, "/2"), "conn")
            await sender.aclose()
        return [first, second], script.connections

    outcomes, connections = asyncio.run(main())
    assert bodies(outcomes) == [b"first", b"second"]
    assert connections == 2


def test_https_verifies_the_certificate_and_keeps_the_connection(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))

    async def main(client_tls: ssl.SSLContext | None) -> tuple[list[Outcome], int]:
        script = Scripted([ok(b"secret one"), ok(b"secret two")], tls=server_tls)
        server = await script.start()
        target = Target.parse(f"https://127.0.0.1:{script.port}")
        async with server:
            sender = Sender(Http1Transport(ssl_context=client_tls), timeout=5)
            outcomes = []
            for path in ("/1", "/2"):
                request = OutgoingRequest(
                    "GET", target, path, (("Host", target.host_port),), b"", path
                )
                outcomes.append(await sender.submit(request, "conn"))
            await sender.aclose()
        return outcomes, script.connections

    outcomes, connections = asyncio.run(main(trusting))
    assert bodies(outcomes) == [b"secret one", b"secret two"]
    assert connections == 1
    # The default context trusts only the system's authorities: a self-signed shadow fails.
    refused, _ = asyncio.run(main(None))
    assert "SSLCertVerificationError" in str(refused[0].error)
