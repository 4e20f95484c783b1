"""The floor row: the least a replay in Python does per record.

A process of its own (`bench/replay.py --_floor ...`), built from the
replayer's own request builder and HTTP/1.1 client, so what `replay range`
costs above it is the product: comparison, results, offsets, pacing. It is
the one part of the benchmark that imports the replayer's modules: when they
move, update the imports here.
"""

from __future__ import annotations

import asyncio
import time

from replaying.traffic import PARTITIONS


def floor_main(bootstrap: str, topic: str, target: str, count: int, concurrency: int) -> None:
    """The least a replay in Python does per record, as a process of its own (`--_floor`).

    Consume from every partition with confluent-kafka, decode, build the
    request, send it and read the response with the replayer's own client on
    its event loop, `concurrency` at a time: no comparison, no results, no
    offsets, no metrics, no schedule. What `replay range` costs above this is
    the product (comparison, results, at-least-once accounting, pacing).
    """
    from confluent_kafka import Consumer, TopicPartition

    from replayer.eventloop import run
    from replayer.models import OutgoingRequest, Target
    from replayer.sending.http1 import Http1Transport
    from replayer.sending.request import build_request
    from schemas.codec import Codec

    async def go() -> None:
        consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "bench-floor", "enable.auto.commit": False}
        )
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        codec, parsed = Codec(), Target.parse(target)
        transport = Http1Transport(limit=concurrency)
        queue: asyncio.Queue[OutgoingRequest] = asyncio.Queue(maxsize=4 * concurrency)
        started = time.monotonic()

        async def sender() -> None:
            while True:
                request = await queue.get()
                await transport.send(request)
                queue.task_done()

        tasks = [asyncio.create_task(sender()) for _ in range(concurrency)]
        got = 0
        while got < count:
            messages = consumer.consume(500, 0)
            if not messages:
                await asyncio.sleep(0.001)
                continue
            for message in messages:
                got += 1
                await queue.put(build_request(codec.decode(message.value()), parsed))
        await queue.join()
        elapsed = time.monotonic() - started
        for task in tasks:
            task.cancel()
        await transport.aclose()
        consumer.close()
        print(f"replayed topic {topic} to {target} {got} records in {elapsed:.2f}s", flush=True)

    run(go())
