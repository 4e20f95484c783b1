"""A Kafka producer whose `produce()` never blocks, shared by every writer of trafficmirror.

The recorder's event sink, the replayer's results sink and its dead-letter
queue all need the same thing: hand a message to librdkafka's bounded local
queue and return at once, learn later (on a background thread) whether the
broker took it, and on shutdown flush for a bounded time and account for
whatever is left. `BackgroundProducer` is that, once; each user keeps its own
counters and metrics by passing an `on_report` callback, and `Report` says
what became of each message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Producer

from trafficmirror.plumbing.errors import ConfigError
from trafficmirror.plumbing.logs import DebugLog, Throttle

_PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})


# Not frozen: built for every replayed record, and a frozen dataclass costs
# more to build (bench/replay.py); treat it as immutable all the same.
@dataclass(slots=True)
class Report:
    """What became of queued messages: one, or `count` of them (`delivered` counted in
    batches, see `report_each_delivery`, and `undelivered` at close).

    `status` is `delivered` (the broker acknowledged it), `failed` (the broker
    rejected it, or it was not acknowledged within `message.timeout.ms`) or
    `undelivered` (still queued when `close()`'s flush timeout ran out, and
    purged, or never reported at all).
    """

    status: str  # delivered | failed | undelivered
    topic: str | None = None
    error: str | None = None
    count: int = 1


class BackgroundProducer:
    """A librdkafka producer: non-blocking `produce()`, a poll thread, a bounded flush.

    `config` is a complete librdkafka config (from `KafkaSettings.producer_config`);
    `on_report` is called with a `Report` for every message `produce()` queued,
    on the poll thread (or in `close()`), exactly once per message. `name`
    names the poll thread and the log lines. `on_poll` runs after every poll
    (the recorder updates its queue gauge there).

    With `report_each_delivery=False`, librdkafka reports only failures
    (`delivery.report.only.error`), and successes reach `on_report` as
    `delivered` reports with a `count`, after each poll: the messages queued
    that were neither reported nor are still in librdkafka's queue. That count
    never runs ahead of the broker's acknowledgements, and it is exact at
    `close()`. It spares a Python callback per message on the poll thread,
    which for the recorder shares the proxy's CPU.
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        name: str,
        logger: logging.Logger,
        on_report: Callable[[Report], None],
        on_poll: Callable[[], None] | None = None,
        report_each_delivery: bool = True,
    ) -> None:
        self.name = name
        self._on_report = on_report
        self._on_poll = on_poll
        self._logger = logger
        self._throttle = Throttle()
        self._lock = threading.Lock()
        self._enqueued = 0
        self._reported = 0
        #: Successes counted by `_count_deliveries` (report_each_delivery=False).
        self._counted = 0
        self._closed = False
        self._count_silent = not report_each_delivery
        config = dict(config)
        if self._count_silent:
            # A user's own setting wins; explicit success reports are counted
            # as they come, and the silent ones still add up (see _count_deliveries).
            config.setdefault("delivery.report.only.error", True)
        config["on_delivery"] = self._on_delivery
        config["error_cb"] = self._on_error
        # librdkafka's own log lines go through `logging` at debug level (served
        # by poll()) instead of straight to stderr; the errors among them also
        # reach error_cb, which logs them rate-limited.
        config["logger"] = DebugLog(logging.getLogger(f"{logger.name}.librdkafka"))
        try:
            self.producer = Producer(config)
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(f"bad Kafka producer settings: {reason(exc)}") from None
        self._stop = threading.Event()
        self._poller = threading.Thread(
            target=self._poll_loop, name=f"trafficmirror-{name}-poll", daemon=True
        )
        self._poller.start()

    @property
    def closed(self) -> bool:
        """True once `close()` began; `produce()` then answers `closed`."""
        return self._closed

    def log_error(self, kind: Hashable, message: str) -> None:
        """Log `message` as a warning, at most once per `kind` and interval (an outage
        must not flood the log; the caller counts every occurrence)."""
        if self._throttle.allow(kind):
            self._logger.warning("%s", message)

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        timestamp_ms: int = 0,
    ) -> str | None:
        """Queue one message: None if queued, else the reason it was not. Never blocks or raises.

        The reasons: `queue_full` (`BufferError`: the local queue is full),
        `produce` (it raised anything else: message too large, unknown
        partition), `closed`.
        """
        if self._closed:
            return "closed"
        try:
            # cast: confluent_kafka's stub wants a list of str|bytes|None values;
            # any sequence of (str, bytes) pairs is accepted at run time.
            self.producer.produce(
                topic, value, key, headers=cast(Any, headers), timestamp=timestamp_ms
            )
        except BufferError:
            return "queue_full"
        except Exception as exc:  # one bad message must never stop the caller
            self.log_error(("produce", topic), f"cannot queue a message for {topic}: {reason(exc)}")
            return "produce"
        with self._lock:
            self._enqueued += 1
        return None

    def __len__(self) -> int:
        """Messages queued locally or in flight."""
        return len(self.producer)

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        with self._lock:
            self._reported += 1
        if err is None:
            self._on_report(Report("delivered", msg.topic()))
        elif err.code() in _PURGED:
            self._on_report(Report("undelivered", msg.topic()))
        else:
            self._on_report(Report("failed", msg.topic(), str(err.str())))

    def _on_error(self, err: KafkaError) -> None:
        self.log_error(err.code(), f"Kafka ({self.name} producer): {err.str()}")

    def _count_deliveries(self) -> None:
        """Report, as one `delivered` count, the messages that left without a report.

        Runs on the thread that serves the reports (the poll thread, or close()
        after it stopped), so `_reported` is its own. `_enqueued` is read before
        the queue length: a message queued in between is in the length but not
        in `_enqueued`, which makes the count lower for now, never higher.
        """
        with self._lock:
            enqueued = self._enqueued
        silent = enqueued - self._reported - len(self.producer)
        if silent > self._counted:
            count = silent - self._counted
            self._counted = silent
            self._on_report(Report("delivered", None, None, count))

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.producer.poll(0.1)
                if self._count_silent:
                    self._count_deliveries()
                if self._on_poll is not None:
                    self._on_poll()
            except Exception:  # a callback bug must not stop delivery reports
                self._logger.exception("error while serving Kafka delivery reports")

    def close(self, timeout: float = 10.0) -> None:
        """Flush for at most `timeout` seconds; what is left is purged and reported. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._poller.join()
        if self.producer.flush(timeout):
            self.producer.purge(in_queue=True, in_flight=True, blocking=False)
            self.producer.flush(1.0)  # serves the purge reports
        if self._count_silent:
            self._count_deliveries()
        with self._lock:
            unreported = self._enqueued - self._reported - self._counted
            self._reported = self._enqueued - self._counted
        if unreported > 0:
            self._on_report(Report("undelivered", None, None, unreported))


def reason(exc: BaseException) -> str:
    """librdkafka's text for a KafkaException, else the exception's own."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return str(exc.args[0].str())
    return str(exc) or type(exc).__name__
