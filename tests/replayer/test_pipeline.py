"""Pipeline: every record ends as sent, error, skipped or undecodable, and is counted."""

from __future__ import annotations

import asyncio

from replayer.models import Record, Response, Target
from replayer.pipeline import Pipeline
from replayer.sending.sender import MockTransport, OutgoingRequest, Sender
from schemas.codec import Codec
from tests.replayer.events import make_event

CODEC = Codec()


def record(offset: int, value: bytes | None, key: bytes | None = b"c1") -> Record:
    return Record("t", 0, offset, key, value, 1_700_000_000_000)


def test_each_kind_of_record_is_handled_and_counted() -> None:
    async def main() -> None:
        async def handler(req: OutgoingRequest) -> Response:
            if req.path == "/down":
                raise ConnectionResetError("reset by peer")
            return Response(201, body=b"ok")

        sender = Sender(MockTransport(handler), concurrency=2)
        pipeline = Pipeline(codec=CODEC, target=Target.parse("http://s:81"), sender=sender)
        futures = [
            pipeline.handle(record(0, CODEC.encode(make_event(path="/up")).value)),
            pipeline.handle(record(1, CODEC.encode(make_event(path="/down")).value)),
            pipeline.handle(
                record(
                    2,
                    CODEC.encode(
                        make_event(method="POST", body=b"x", body_truncated=True, body_length=99)
                    ).value,
                )
            ),
            pipeline.handle(record(3, b"\x00\x00garbage")),
            pipeline.handle(record(4, None)),
        ]
        results = await asyncio.gather(*futures)
        assert [r.kind for r in results] == [
            "sent",
            "error",
            "skipped",
            "undecodable",
            "undecodable",
        ]
        assert results[0].outcome is not None and results[0].outcome.response == Response(
            201, body=b"ok"
        )
        assert results[0].outcome.request.header("Host") == "s:81"
        assert "reset by peer" in (results[1].detail or "")
        assert results[2].detail == "truncated"
        assert results[4].detail == "empty record"
        stats = pipeline.stats
        assert stats.line() == ("consumed 5, sent 1, errors 1, skipped-truncated 1, undecodable 2")
        assert stats.handled == 5
        part = stats.partitions[0]
        assert (part.first, part.last, part.sent, part.errors, part.skipped) == (0, 4, 1, 1, 1)
        await sender.aclose()

    asyncio.run(main())


def test_closing_the_sender_cancels_unfinished_records() -> None:
    """A cancelled record was not handled: the caller must not finish its offset."""

    async def main() -> None:
        async def handler(req: OutgoingRequest) -> Response:
            await asyncio.sleep(10)
            return Response(200)

        sender = Sender(MockTransport(handler), concurrency=2)
        pipeline = Pipeline(codec=CODEC, target=Target.parse("http://s"), sender=sender)
        future = pipeline.handle(record(0, CODEC.encode(make_event()).value))
        await asyncio.sleep(0.01)
        await sender.aclose()
        await asyncio.sleep(0)
        assert future.cancelled()
        assert pipeline.stats.handled == 0

    asyncio.run(main())
