"""Http2Transport and the version dispatch against a real HTTP/2 server on real sockets.

The server (tests/h2server.py) speaks only HTTP/2 (h2c, or TLS with ALPN h2)
and notes every request, so these tests see what went over the wire: pseudo-
headers, translated headers, bodies, trailers, how many connections and how
many streams at once. Its knobs cover the edge cases: a small stream limit,
a small receive window (flow control), GOAWAY after a few streams.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from replayer.models import Outcome, OutgoingRequest, Target
from replayer.sending.bodies import BodyBudget
from replayer.sending.dispatch import VersionedTransport
from replayer.sending.http1 import Http1Transport
from replayer.sending.http2 import H2NotOffered, Http2Transport, h2_headers
from replayer.sending.sender import NotSent, Sender, Transport
from tests.h2server import Answer, H2Server, Seen, tls_server_context
from tests.support import free_port, self_signed_cert


def request(
    target: Target,
    path: str = "/",
    *,
    method: str = "GET",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    trailers: tuple[tuple[str, str], ...] = (),
    version: str = "HTTP/2.0",
) -> OutgoingRequest:
    head = (("Host", target.host_port), *headers)
    return OutgoingRequest(method, target, path, head, body, path, version, trailers)


async def send_all(
    server: H2Server,
    requests: Callable[[Target], list[OutgoingRequest]],
    transport: Transport | None = None,
    concurrency: int = 64,
    timeout: float = 20,
) -> list[Outcome]:
    await server.start()
    try:
        target = Target.parse(f"http{'s' if server.tls else ''}://127.0.0.1:{server.port}")
        sender = Sender(transport or Http2Transport(), concurrency=concurrency, timeout=timeout)
        futures = [sender.submit(r, i) for i, r in enumerate(requests(target))]
        outcomes = list(await asyncio.gather(*futures))
        await sender.aclose()
    finally:
        await server.close()
    return outcomes


def test_h2_headers_translate_the_request_for_http2() -> None:
    target = Target.parse("http://shadow:8080")
    built = request(
        target,
        "/a%20b?q=1",
        method="POST",
        headers=(
            ("Connection", "keep-alive, X-Drop"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("TE", "gzip"),
            ("X-Mixed-Case", "Value"),
            ("Cookie", "a=1"),
            ("Cookie", "b=2"),
        ),
    )
    assert h2_headers(built) == [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"shadow:8080"),
        (b":path", b"/a%20b?q=1"),
        (b"x-mixed-case", b"Value"),
        (b"cookie", b"a=1"),
        (b"cookie", b"b=2"),
    ]
    grpc = request(target, "/pkg.Svc/Call", headers=(("Content-Type", "application/grpc+proto"),))
    assert h2_headers(grpc)[-1] == (b"te", b"trailers")
    web = request(target, "/pkg.Svc/Call", headers=(("Content-Type", "application/grpc-web"),))
    assert (b"te", b"trailers") not in h2_headers(web)  # gRPC-Web is not gRPC (grpcmedia)


def test_a_get_goes_over_http2_with_pseudo_headers_and_translated_headers() -> None:
    server = H2Server()
    outcomes = asyncio.run(
        send_all(
            server,
            lambda t: [
                request(t, "/items/1?x=%2F", headers=(("Connection", "close"), ("X-Tag", "A")))
            ],
        )
    )
    response = outcomes[0].response
    assert response is not None, outcomes[0].error
    assert (response.status, response.http_version) == (200, "HTTP/2.0")
    assert response.headers == (("content-type", "application/json"),)
    assert response.body == b'{"path": "/items/1?x=%2F", "method": "GET"}'
    seen = server.seen[0]
    assert (seen.method, seen.path, seen.authority) == (
        "GET",
        "/items/1?x=%2F",
        f"127.0.0.1:{server.port}",
    )
    assert seen.headers == [("x-tag", "A")]


def test_concurrent_requests_share_one_connection_within_the_servers_stream_limit() -> None:
    server = H2Server(max_streams=5, delay=0.05)
    outcomes = asyncio.run(
        send_all(server, lambda t: [request(t, f"/{i}") for i in range(40)], concurrency=40)
    )
    assert [o.error for o in outcomes] == [None] * 40
    assert sorted(s.path for s in server.seen) == sorted(f"/{i}" for i in range(40))
    assert server.connections == 1
    # Streams overlapped (a second each would be one at a time), never beyond the limit.
    assert 2 <= server.max_open <= 5


def test_large_bodies_both_ways_under_flow_control_and_the_body_cap() -> None:
    upload = bytes(range(256)) * 4096  # 1 MiB, far beyond the server's 4 KiB window
    download = b"x" * (6 * 1024 * 1024)  # beyond the client's 4 MiB stream window

    def echo_length(seen: Seen) -> Answer:
        digest = hashlib.sha256(seen.body).hexdigest().encode()
        return Answer(200, [("x-got", str(len(seen.body)))], digest + download)

    server = H2Server(echo_length, window=4096)
    transport = Http2Transport(max_body=1000, budget=BodyBudget(10_000))
    outcomes = asyncio.run(
        send_all(server, lambda t: [request(t, "/up", method="PUT", body=upload)], transport)
    )
    response = outcomes[0].response
    assert response is not None, outcomes[0].error
    assert server.seen[0].body == upload
    whole = hashlib.sha256(upload).hexdigest().encode() + download
    assert response.body == whole[:1000]
    assert response.body_truncated
    assert response.body_length == len(whole)
    assert response.body_sha256 == hashlib.sha256(whole).hexdigest()
    assert transport.budget.available == transport.budget.total  # given back


def test_request_trailers_are_sent_and_response_trailers_returned() -> None:
    def grpc_like(seen: Seen) -> Answer:
        return Answer(
            200,
            [("content-type", "application/grpc")],
            b"\x00\x00\x00\x00\x02hi",
            [("grpc-status", "0"), ("grpc-message", "OK")],
        )

    server = H2Server(grpc_like)
    outcomes = asyncio.run(
        send_all(
            server,
            lambda t: [
                request(
                    t,
                    "/pkg.Echo/Say",
                    method="POST",
                    headers=(("Content-Type", "application/grpc"),),
                    body=b"\x00\x00\x00\x00\x02yo",
                    trailers=(("X-Checksum", "abc"),),
                )
            ],
        )
    )
    response = outcomes[0].response
    assert response is not None, outcomes[0].error
    assert response.trailers == (("grpc-status", "0"), ("grpc-message", "OK"))
    assert response.body == b"\x00\x00\x00\x00\x02hi"
    seen = server.seen[0]
    assert seen.trailers == [("x-checksum", "abc")]
    assert ("te", "trailers") in seen.headers


def test_goaway_moves_later_requests_to_a_new_connection() -> None:
    server = H2Server(goaway_after=3)
    outcomes = asyncio.run(
        send_all(server, lambda t: [request(t, f"/{i}") for i in range(10)], concurrency=1)
    )
    assert [o.error for o in outcomes] == [None] * 10
    assert len(server.seen) == 10  # none sent twice
    assert server.connections >= 3


def test_a_timeout_resets_its_stream_and_the_connection_goes_on() -> None:
    server = H2Server(delay=0.0)

    async def main() -> tuple[Outcome, Outcome]:
        await server.start()
        target = Target.parse(f"http://127.0.0.1:{server.port}")
        sender = Sender(Http2Transport(), timeout=0.5)
        server.delay = 30.0
        slow = await sender.submit(request(target, "/slow"), "a")
        server.delay = 0.0
        fast = await sender.submit(request(target, "/fast"), "a")
        await asyncio.sleep(0.1)
        await sender.aclose()
        await server.close()
        return slow, fast

    slow, fast = asyncio.run(main())
    assert slow.error is not None and "timeout" in slow.error
    assert fast.response is not None and fast.response.status == 200
    assert server.connections == 1
    assert server.resets == 1


def test_nothing_listening_is_not_sent() -> None:
    async def main() -> None:
        target = Target.parse(f"http://127.0.0.1:{free_port()}")
        transport = Http2Transport()
        with pytest.raises(NotSent):
            await transport.send(request(target))
        await transport.aclose()

    asyncio.run(main())


def test_a_connection_lost_after_the_request_was_written_is_an_error_not_not_sent() -> None:
    async def main() -> BaseException:
        async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            import h2.config
            import h2.connection

            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            conn.initiate_connection()
            writer.write(conn.data_to_send())
            while True:  # read until the request's HEADERS arrive, then hang up
                data = await reader.read(65536)
                if not data or any(
                    type(e).__name__ == "RequestReceived" for e in conn.receive_data(data)
                ):
                    break
                writer.write(conn.data_to_send())
            writer.close()

        server = await asyncio.start_server(cut, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = Http2Transport()
        async with server:
            try:
                await transport.send(request(Target.parse(f"http://127.0.0.1:{port}")))
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                return exc
            finally:
                await transport.aclose()
        raise AssertionError("no error")

    error = asyncio.run(main())
    assert isinstance(error, ConnectionError)
    assert not isinstance(error, NotSent)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path)


def test_tls_negotiates_h2_by_alpn_and_verifies_the_certificate(
    tls_files: tuple[Path, Path],
) -> None:
    cert, key = tls_files
    trusting = ssl.create_default_context(cafile=str(cert))
    server = H2Server(tls=tls_server_context(str(cert), str(key)))
    outcomes = asyncio.run(
        send_all(server, lambda t: [request(t, "/secure")], Http2Transport(trusting))
    )
    response = outcomes[0].response
    assert response is not None, outcomes[0].error
    assert response.http_version == "HTTP/2.0"
    assert server.seen[0].path == "/secure"
    # The system's authorities do not know the self-signed shadow: nothing is sent.
    refused = asyncio.run(send_all(H2Server(tls=server.tls), lambda t: [request(t)]))
    assert "SSLCertVerificationError" in str(refused[0].error)


class Http1Only:
    """An HTTP/1.1 server (TLS: ALPN http/1.1 only) answering 200 with the protocol it saw."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.port = 0
        self.requests: list[bytes] = []

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                if head.startswith(b"PRI * HTTP/2.0"):
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    break
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nh1ok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _versioned(mode: str, cafile: Path | None = None) -> VersionedTransport:
    def tls() -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(cafile) if cafile else None)

    return VersionedTransport(mode, max_body=1 << 20, budget=BodyBudget(1 << 24), tls=tls)


@pytest.mark.parametrize("scheme", ["http", "https"], ids=["h2c", "alpn"])
def test_auto_falls_back_to_http1_for_a_target_without_h2(
    scheme: str, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    tls = None
    if scheme == "https":
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        tls.set_alpn_protocols(["http/1.1"])

    async def main(mode: str) -> tuple[list[Outcome], Http1Only]:
        shadow = Http1Only(tls)
        server = await shadow.start()
        target = Target.parse(f"{scheme}://127.0.0.1:{shadow.port}")
        sender = Sender(_versioned(mode, cert), timeout=5)
        async with server:
            outcomes = [await sender.submit(request(target, f"/{i}"), "k") for i in range(3)]
            await sender.aclose()
        return outcomes, shadow

    outcomes, shadow = asyncio.run(main("auto"))
    assert [o.response.body if o.response else o.error for o in outcomes] == [b"h1ok"] * 3
    assert [o.response.http_version for o in outcomes if o.response] == ["HTTP/1.1"] * 3
    # The h2c preface (if any) was the only thing the shadow saw besides the three requests.
    assert [r.split(b" ")[1] for r in shadow.requests if not r.startswith(b"PRI")] == [
        b"/0",
        b"/1",
        b"/2",
    ]
    forced, _ = asyncio.run(main("2"))
    assert all(o.response is None for o in forced)
    assert "HTTP/2" in str(forced[0].error) or "h2" in str(forced[0].error)


@pytest.mark.parametrize("mode", ["auto", "1.1", "2"], ids=["mode-auto", "mode-1.1", "mode-2"])
def test_the_version_mode_picks_the_protocol_per_request(mode: str) -> None:
    async def main() -> tuple[list[Outcome], list[Outcome]]:
        h2_server = H2Server()
        h1_server = Http1Only()
        await h2_server.start()
        async with await h1_server.start():
            sender = Sender(_versioned(mode), timeout=5)
            h2_target = Target.parse(f"http://127.0.0.1:{h2_server.port}")
            h1_target = Target.parse(f"http://127.0.0.1:{h1_server.port}")
            recorded_h2 = [
                await sender.submit(request(t, "/a", version="HTTP/2.0"), "k")
                for t in (h2_target, h1_target)
            ]
            recorded_h1 = [
                await sender.submit(request(t, "/b", version="HTTP/1.1"), "k")
                for t in (h2_target, h1_target)
            ]
            await sender.aclose()
        await h2_server.close()
        return recorded_h2, recorded_h1

    recorded_h2, recorded_h1 = asyncio.run(main())

    def versions(outcomes: list[Outcome]) -> list[str | None]:
        return [o.response.http_version if o.response else None for o in outcomes]

    # [to the h2-only server, to the HTTP/1.1-only server]; the h2-only server starts
    # with its SETTINGS frame, which an HTTP/1.1 client cannot read as a response.
    if mode == "auto":
        assert versions(recorded_h2) == ["HTTP/2.0", "HTTP/1.1"]
        assert versions(recorded_h1) == [None, "HTTP/1.1"]
        assert "BadResponse" in str(recorded_h1[0].error)
    elif mode == "1.1":
        assert versions(recorded_h2) == [None, "HTTP/1.1"]
        assert versions(recorded_h1) == [None, "HTTP/1.1"]
    else:
        assert versions(recorded_h2) == ["HTTP/2.0", None]
        assert versions(recorded_h1) == ["HTTP/2.0", None]
        assert "HTTP/1.x" in str(recorded_h2[1].error)


def test_http1_transport_is_untouched_by_the_h2_tls_context(tls_files: tuple[Path, Path]) -> None:
    """The dispatcher gives each protocol its own context: HTTP/1.1 must not offer h2 by ALPN."""
    transport = _versioned("auto", tls_files[0])
    assert isinstance(transport.http1, Http1Transport)
    assert transport.http1._ssl is not transport.http2._ssl  # noqa: SLF001


def test_h2_not_offered_is_not_sent() -> None:
    assert issubclass(H2NotOffered, NotSent)


def test_response_header_bytes_survive_as_over_http_1_1() -> None:
    from replayer.comparing.view import ResponseView
    from replayer.sending.h2conn import _split

    raw = [(b":status", b"200"), (b"x-name", "é€".encode()), (b"x-old", b"\xe9")]
    status, headers = _split(raw)
    assert status == 200
    # The comparison encodes text headers back with latin-1, as for HTTP/1.1 answers.
    assert ResponseView.of(status, headers).headers == tuple(raw[1:])
