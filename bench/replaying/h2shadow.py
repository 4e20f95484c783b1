"""The shadow's HTTP/2 side: h2c with prior knowledge, on `jh2` (as the replayer).

`replaying/shadow.py` hands a connection here when its first bytes are the
HTTP/2 preface, so HTTP/1.1 and HTTP/2 replays meet the same process, the same
answer (the recorded response) and the same arrival notes (by the
`x-trafficmirror-replay` header). Header validation is off on both sides of
h2 here: the shadow should cost as little as it can, so that it is not what
an HTTP/2 row measures.
"""

from __future__ import annotations

import asyncio
import time

import jh2.config
import jh2.connection
import jh2.events
import jh2.settings

from replaying.traffic import RESPONSE_BODY

_HEADERS = [
    (b":status", b"200"),
    (b"content-type", b"application/json"),
    (b"content-length", str(len(RESPONSE_BODY)).encode()),
]
_MARK = b"x-trafficmirror-replay"


class H2Shadow:
    """One h2c connection of the shadow: answers every stream, notes replayed arrivals."""

    def __init__(self, transport: asyncio.Transport, arrivals: list[tuple[float, bytes]]) -> None:
        config = jh2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        self.conn = jh2.connection.H2Connection(config=config)
        self.conn.local_settings = jh2.settings.Settings(
            client=False,
            initial_values={jh2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000},
        )
        self.conn.initiate_connection()
        self.transport = transport
        self.arrivals = arrivals
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        conn = self.conn
        for event in conn.receive_data(data):
            if isinstance(event, jh2.events.RequestReceived):
                for name, value in event.headers:
                    if name == _MARK:
                        self.arrivals.append((now, value))
                        break
            elif isinstance(event, jh2.events.StreamEnded):
                self._answer(event.stream_id)
            elif isinstance(event, jh2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        out = conn.data_to_send()
        if out:
            self.transport.write(out)

    def _answer(self, stream_id: int) -> None:
        self.conn.send_headers(stream_id, _HEADERS)
        self.conn.send_data(stream_id, RESPONSE_BODY, end_stream=True)
        # Each answer goes out at once, as a server answering from several threads
        # would: the replayer starts on the first answers while the shadow works on.
        self.transport.write(self.conn.data_to_send())
