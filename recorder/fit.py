"""The Kafka message size an event needs, and bodies cut so that an event fits in one.

The cap (`trafficmirror_max_body_bytes`) means the body: a body up to it is
recorded whole. So the producer's `message.max.bytes` is sized from the cap
(`message_limit`): two bodies at the cap, plus `HEADROOM` for headers,
trailers and the rest of the event, plus the margin for Kafka's framing. A
`message.max.bytes` the user set that cannot hold that is refused at start, in
one line (`ConfigError`). An event that is still too large (headers beyond the
headroom) is encoded again with both bodies cut to `body_cap()`, so it is
recorded, flagged truncated with the original lengths, rather than lost.
`Truncations` counts every body recorded cut, for whatever reason, and logs
some of them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from recorder.sink import TRUNCATED
from schemas.records import HttpExchange
from trafficmirror.plumbing.errors import ConfigError
from trafficmirror.plumbing.logs import Throttle

logger = logging.getLogger(__name__)

#: Room left in a Kafka message for the key, headers and record framing.
MESSAGE_MARGIN = 16 * 1024
#: Room in an event for everything but its two bodies: headers, trailers, path, metadata.
HEADROOM = 256 * 1024
#: librdkafka's default `message.max.bytes`, kept when the caps need less.
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000
#: The largest `message.max.bytes` librdkafka accepts.
CLIENT_MESSAGE_MAX_BYTES = 1_000_000_000
_PROPERTY = "message.max.bytes"


def needed_message_bytes(max_body_bytes: int) -> int:
    """The Kafka message size that holds an event whose two bodies are at the cap."""
    return 2 * max_body_bytes + HEADROOM + MESSAGE_MARGIN


def message_limit(max_body_bytes: int, properties: Mapping[str, str]) -> int:
    """The producer's `message.max.bytes` for `max_body_bytes`; `ConfigError` if it cannot be.

    Unset, it is librdkafka's default or `needed_message_bytes`, whichever is
    larger. Set by the user (`-X message.max.bytes=N`), it is kept, and refused
    when it cannot hold two bodies at the cap.
    """
    needed = needed_message_bytes(max_body_bytes)
    if needed > CLIENT_MESSAGE_MAX_BYTES:
        raise ConfigError(
            f"--max-body-bytes {max_body_bytes} cannot be honoured: an event with two such "
            f"bodies needs {needed} bytes, over the Kafka client's limit of "
            f"{CLIENT_MESSAGE_MAX_BYTES} (message.max.bytes); lower --max-body-bytes"
        )
    given = properties.get(_PROPERTY)
    if given is None:
        return max(DEFAULT_MESSAGE_MAX_BYTES, needed)
    try:
        limit = int(given)
    except ValueError:
        raise ConfigError(f"{_PROPERTY} must be a number of bytes, not {given!r}") from None
    if limit < needed:
        raise ConfigError(
            f"--max-body-bytes {max_body_bytes} cannot be honoured with {_PROPERTY}={limit}: "
            f"an event with two bodies at the cap needs {needed} bytes; raise "
            f"{_PROPERTY} (and the topic's max.message.bytes) or lower --max-body-bytes"
        )
    return limit


def fits(encoded_size: int, max_message_bytes: int) -> bool:
    """True when an encoded event of `encoded_size` bytes fits in a message, with the margin."""
    return encoded_size <= max_message_bytes - MESSAGE_MARGIN


def body_cap(event: HttpExchange, encoded_size: int, max_message_bytes: int) -> int:
    """The largest body cap that makes `event` (`encoded_size` bytes encoded) fit.

    Everything but the two bodies stays as it is, so the bodies share what is
    left of the message, the smaller one keeping all of itself if it can.
    """
    response = event["response"]
    messages = [event["request"], response["message"] if response is not None else None]
    sizes = [len(m["body"]) for m in messages if m is not None]
    budget = max_message_bytes - MESSAGE_MARGIN - (encoded_size - sum(sizes))
    return fair_cap(sizes, budget)


def fair_cap(sizes: Sequence[int], budget: int) -> int:
    """The largest cap c with sum(min(s, c) for s in sizes) <= budget (0 if none fits)."""
    if budget <= 0:
        return 0
    ordered = sorted(sizes)
    for count, size in enumerate(ordered):
        share = budget // (len(ordered) - count)
        if size > share:
            return share
        budget -= size
    return ordered[-1] if ordered else 0


class Truncations:
    """Bodies recorded cut (over the cap, the message size, the budget, or broken off)."""

    def __init__(self) -> None:
        self.count = 0
        self._log = Throttle()

    def note(self, exchange_id: str, event: HttpExchange, max_body_bytes: int) -> None:
        """Count (and now and then log) the bodies `event` records cut."""
        response = event["response"]
        parts = [("request", event["request"])]
        if response is not None:
            parts.append(("response", response["message"]))
        for part, message in parts:
            if not message["body_truncated"]:
                continue
            self.count += 1
            TRUNCATED.labels(part).inc()
            if self._log.allow():
                length = message["body_length"]
                logger.warning(
                    "trafficmirror: the %s body of exchange %s (%s %s) was recorded cut: "
                    "%d of %s bytes kept (--max-body-bytes %d); %d bodies cut so far",
                    part,
                    exchange_id,
                    event["method"],
                    event["path"][:80].decode("latin-1"),
                    len(message["body"]),
                    "unknown" if length < 0 else length,
                    max_body_bytes,
                    self.count,
                )
