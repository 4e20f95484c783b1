"""The contract every transform follows: a `Step` changes an `OutgoingRequest`.

Steps run in order for each request, just before it goes out (inside the
sender, after the previous request of the same recorded connection has been
answered, so correlation has learned from it); each returns the (new, frozen)
request or raises `Skipped` to skip the record (counted under its reason). A
step may await (an OAuth2 token fetch). An `Observer` learns from each finished
exchange (value correlation: the production and shadow responses of one
recorded connection), called before the next request of that connection is
prepared. `TransformContext` carries what a step may read about the record and
collects the names of the steps that changed something.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from replayer.models import OutgoingRequest, Response
from replayer.transforming.config import Role
from schemas.records import HttpExchange


@dataclass(slots=True)
class TransformContext:
    """What a step may read about the record being replayed, and what was applied."""

    #: The recorded client connection (the Kafka message key); requests of one key
    #: are replayed in order by one worker.
    key: bytes | None
    event: HttpExchange
    #: Names of the steps that changed the request, in order (never values).
    applied: list[str] = field(default_factory=list)
    #: Which request of the record this is: to the shadow, or to the baseline
    #: (`--baseline`). Each role has its own chain of steps and its own state.
    role: Role = "shadow"
    #: (production value, shadow value) pairs the comparison of this exchange
    #: treats as equal (value correlation fills it; the pipeline hands it on).
    equal_values: set[tuple[str, str]] = field(default_factory=set)


class Step(Protocol):
    """One transform. `name` is what results and the report show."""

    name: str

    async def apply(self, request: OutgoingRequest, context: TransformContext) -> OutgoingRequest:
        """The request to send instead; raise `replayer.models.Skipped` to skip the record.

        Return `request` itself (the same object) when nothing changed: the
        chain lists `name` in `context.applied` when a step returns another one
        and listed nothing itself (correlation lists the rules it used).
        """
        ...


class Observer(Protocol):
    """Learns from a finished exchange (called after the target answered or failed)."""

    def observe(self, context: TransformContext, response: Response | None) -> None: ...
