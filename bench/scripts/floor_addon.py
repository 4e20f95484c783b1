"""The least a mitmdump script that records every exchange to Kafka can do.

A benchmark row, not a recorder: loaded with `mitmdump -s` by
`bench/recorder.py --configs ...,script,floor,floor-bare` (it lives in its own
folder because mitmproxy puts a script's folder first on sys.path, where
bench/recorder.py would hide the `recorder` package).

It is our addon with the event left out: the same wiring (`addons = [...]`
after `recorder.lean.missing_hooks`) and, per response, one `produce()` of the
same bytes: the first exchange's event, built and encoded once. What it
produces with comes from TRAFFICMIRROR_BENCH_FLOOR:

  sink   our producer (`recorder.sink.KafkaSink`: the recorder's librdkafka
         settings, poll thread, batched acknowledgements), as the addon does;
  bare   a confluent-kafka `Producer` with the same librdkafka settings and
         no callbacks, polled by a thread: the least any recorder built on
         confluent-kafka does;
  none   nothing: what mitmproxy's dispatch to a script's hooks costs.

So the distance from plain mitmdump to `bare` is what loading a script and
producing to Kafka cost any recorder, and the distance from `sink` to the
addon is what building and encoding each event costs ours. The broker and
topic come from TRAFFICMIRROR_BENCH_BOOTSTRAP and TRAFFICMIRROR_BENCH_TOPIC.
"""

from __future__ import annotations

import os
import threading
from typing import Any, cast

from confluent_kafka import Producer
from mitmproxy import http

from recorder.event import flow_to_event, recorder_info
from recorder.lean import missing_hooks
from recorder.sink import RECORDER_PRODUCER_DEFAULTS, KafkaSink
from schemas.codec import Codec
from trafficmirror.plumbing.kafka import KafkaSettings


class BareSink:
    """confluent-kafka and nothing else: no callbacks, no counting, one poll thread."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self.producer = Producer(settings.producer_config(**RECORDER_PRODUCER_DEFAULTS))
        self.produced = 0
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    def send(
        self, key: bytes, value: bytes, headers: list[tuple[str, bytes]], timestamp_ms: int
    ) -> None:
        self.producer.produce(
            self.topic, value, key, headers=cast(Any, headers), timestamp=timestamp_ms
        )
        self.produced += 1

    def close(self, timeout: float) -> str:
        self._stop.set()
        self._poller.join()
        left = self.producer.flush(timeout)
        return f"recorded={self.produced - left} dropped={left} failed=unknown"


class Floor:
    def __init__(self) -> None:
        self.sink: KafkaSink | BareSink | None = None
        self.value = b""
        self.headers: list[tuple[str, bytes]] = []

    def running(self) -> None:
        mode = os.environ.get("TRAFFICMIRROR_BENCH_FLOOR", "none")
        if mode == "none":
            return
        settings = KafkaSettings.from_options(os.environ["TRAFFICMIRROR_BENCH_BOOTSTRAP"])
        topic = os.environ["TRAFFICMIRROR_BENCH_TOPIC"]
        self.sink = KafkaSink(settings, topic) if mode == "sink" else BareSink(settings, topic)

    def response(self, flow: http.HTTPFlow) -> None:
        if not self.value:
            encoded = Codec().encode(flow_to_event(flow, 1 << 20, recorder_info("floor")))
            self.value, self.headers = encoded.value, encoded.headers
        if self.sink is not None:
            self.sink.send(
                flow.client_conn.id.encode(),
                self.value,
                self.headers,
                int(flow.request.timestamp_start * 1000),
            )

    def done(self) -> None:
        if isinstance(self.sink, KafkaSink):
            stats = self.sink.close(10.0)
            line = f"recorded={stats.recorded} dropped={stats.dropped} failed={stats.failed}"
        elif self.sink is not None:
            line = self.sink.close(10.0)
        else:
            return
        print(f"floor summary: {line}", flush=True)


globals().update(missing_hooks(globals()))
addons = [Floor()]
