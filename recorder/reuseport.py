"""One listen port for several recorder processes: SO_REUSEPORT, checked and reserved.

`record --workers N` runs N processes that each listen on the same address;
with SO_REUSEPORT on every socket, Linux spreads new connections over them.
mitmproxy binds its listening socket with `asyncio.start_server()` and has no
reuse-port option, so a worker runs mitmproxy on `ReusePortLoop`, an event loop
that adds `reuse_port=True` to the servers it creates on that one port; mitmproxy
itself is not patched (it binds the same way in 11 and 12). `reserve()` checks
the address first with an ordinary bind (a port held by anyone, with or without
SO_REUSEPORT, is refused in one line, never silently shared), then keeps a bound,
non-listening SO_REUSEPORT socket so no other program takes the port meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from trafficmirror.plumbing.errors import TrafficMirrorError, UsageError


def supported() -> bool:
    """True where sockets can share a port (Linux and the BSDs; Linux balances them)."""
    return hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _cannot_listen(
    host: str, port: int, exc: OSError, what: str = "listen on"
) -> TrafficMirrorError:
    # create_server() adds "(while attempting to bind on ...)": the errno says enough.
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return TrafficMirrorError(f"cannot {what} {host}:{port}: {reason}")


def check_free(host: str, port: int, what: str = "listen on") -> None:
    """Fail with one line (`cannot WHAT host:port: reason`), before anything starts,
    if host:port cannot be bound now (port 0 always can)."""
    if port == 0:
        return
    try:
        socket.create_server((host, port), family=_family(host)).close()
    except OSError as exc:
        raise _cannot_listen(host, port, exc, what) from None


def reserve(host: str, port: int) -> socket.socket:
    """A bound SO_REUSEPORT socket on host:port (port 0: a free one) that accepts nothing.

    Raises `TrafficMirrorError` (one line) when something else holds the
    address, whether or not it set SO_REUSEPORT.
    """
    if not supported():
        raise UsageError("--workers needs SO_REUSEPORT, which this system does not have")
    family = _family(host)
    try:
        if port != 0:
            # An ordinary bind fails on any socket bound there; a reuse-port bind
            # would join another program's reuse-port group instead.
            socket.create_server((host, port), family=family).close()
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise _cannot_listen(host, port, exc) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise _cannot_listen(host, port, exc) from None
    return sock


class ReusePortLoop(asyncio.SelectorEventLoop):
    """asyncio's loop, but every server it creates on `port` shares it (SO_REUSEPORT).

    Servers on other ports and servers made from a ready socket are left as
    they are.
    """

    def __init__(self, port: int) -> None:
        super().__init__()
        self.reuse_port = port

    # The arguments are asyncio's, passed through whole.
    async def create_server(
        self, protocol_factory: Any, host: Any = None, port: Any = None, **kwargs: Any
    ) -> asyncio.Server:
        if port == self.reuse_port and kwargs.get("sock") is None:
            kwargs["reuse_port"] = True
        return await super().create_server(protocol_factory, host, port, **kwargs)
