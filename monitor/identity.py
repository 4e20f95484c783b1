"""Who sent a request: the client id the monitor counts and names in alerts.

By default the recorded client address (`addr:10.1.2.3`; the port is left
out, it changes with every connection). With a client header (an API key,
a tenant id) the id is `hmac:<hex>`, the HMAC-SHA256 of the header's value
under the monitor's key, so alerts and metrics can tell clients apart
without ever holding the key itself. A request without that header falls
back to its address. All members of a group need the same key to give a
client the same id; without one each process draws its own.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os

from schemas.records import HttpExchange
from trafficmirror.plumbing.logs import Throttle

logger = logging.getLogger(__name__)

#: Hex digits of the HMAC kept (96 bits: distinct clients stay distinct).
HMAC_DIGITS = 24
#: Environment variable holding the HMAC key (a key file wins).
KEY_ENV = "TRAFFICMIRROR_MONITOR_KEY"
#: What the recorder writes for a masked header: every client would look the same.
_MASKED = b"***"


class ClientIdentity:
    """Maps an exchange to its client id."""

    def __init__(self, header: str | None = None, key: bytes | None = None) -> None:
        self.header = header.lower().encode("latin-1") if header else None
        self.key = key if key else os.urandom(32)
        self._throttle = Throttle()

    def __call__(self, event: HttpExchange) -> str:
        """`hmac:<hex>` of the client header's value, else `addr:<client host>`."""
        if self.header is not None:
            headers = event["request"]["headers"]
            for index in range(0, len(headers) - 1, 2):
                if headers[index].lower() == self.header:
                    value = headers[index + 1]
                    if value == _MASKED and self._throttle.allow("masked"):
                        logger.warning(
                            "the recorder masks %s: every client looks the same (record with "
                            "--redact-header %s=hmac to keep them apart)",
                            self.header.decode("latin-1"),
                            self.header.decode("latin-1"),
                        )
                    digest = hmac.new(self.key, value, hashlib.sha256).hexdigest()
                    return f"hmac:{digest[:HMAC_DIGITS]}"
        return f"addr:{event['client']['host']}"
