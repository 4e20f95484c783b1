"""The in-process HTTP/1.1 server that reads mirrored bodies to their end and drops them.

`record --mirror` answers a mirrored request itself (`recorder.mirror`).
mitmproxy can only do that for a body it holds whole, so a body that may be
larger than the recorder's cap is streamed instead, and a streamed request
must go to a server. `DiscardServer` is that server, on a loopback port of the
recorder's own process: it reads each request (Content-Length or chunked, as
mitmproxy frames it) and gives the mirror's answer when the request ended,
keeping nothing. mitmproxy stops reading the client while its writes to this
server are not drained, so memory stays bounded whatever the body's size.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import h11

logger = logging.getLogger(__name__)

#: What a mirror source gets: 200 with an empty body, keep-alive (nginx and Envoy ignore it).
ANSWER_STATUS = 200
_READ_SIZE = 65536


class DiscardServer:
    """A loopback HTTP/1.1 server that answers `ANSWER_STATUS` to every request, body dropped.

    The socket is bound when the object is made, so `address` is known at
    once and connections made before `start()` wait in the backlog.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._sock = socket.create_server((host, 0))
        address = self._sock.getsockname()
        self.address: tuple[str, int] = (str(address[0]), int(address[1]))
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Serve the bound socket on the running event loop (once)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, sock=self._sock)

    def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
        else:
            self._sock.close()
        for writer in list(self._writers):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(_READ_SIZE))
                elif isinstance(event, h11.EndOfMessage):
                    head = h11.Response(
                        status_code=ANSWER_STATUS, headers=[("content-length", "0")]
                    )
                    writer.write((conn.send(head) or b"") + (conn.send(h11.EndOfMessage()) or b""))
                    await writer.drain()
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    break
                # h11.Request and h11.Data: nothing to keep.
        except (h11.ProtocolError, OSError) as exc:
            # Only mitmproxy talks to this server; it hangs up when its client did.
            logger.debug("trafficmirror: mirror discard connection ended: %s", exc)
        finally:
            self._writers.discard(writer)
            writer.close()
