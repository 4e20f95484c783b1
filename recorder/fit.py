"""Bodies cut so that an event fits in one Kafka message.

A body longer than `trafficmirror_max_body_bytes` is already cut (and flagged)
when the event is built, but two bodies under that cap can still make an event
over the producer's `message.max.bytes` (librdkafka's default is 1,000,000
bytes, under a broker's default limit). Kafka would refuse such an event
whole; the addon encodes it again with both bodies cut to `body_cap()`, so it
is recorded, flagged truncated with the original lengths, rather than lost.
"""

from __future__ import annotations

from collections.abc import Sequence

from schemas.records import HttpExchange

#: Room left in a Kafka message for the key, headers and record framing.
MESSAGE_MARGIN = 16 * 1024


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
