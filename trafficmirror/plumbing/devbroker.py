"""An in-memory Kafka cluster for trials and tests: librdkafka's mock cluster.

No Apache Kafka broker can be installed on the development machines, but the
librdkafka shipped inside the confluent-kafka wheel contains a mock cluster that
speaks the real Kafka protocol over TCP sockets on 127.0.0.1, with fault
injection. Its C API is exported by the bundled library, so it is driven here
with ctypes. It keeps everything in memory and is test-grade: no persistence,
no admin APIs (topics are created through this class), no timestamp look-up.
"""

from __future__ import annotations

import ctypes
import glob
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from trafficmirror.plumbing.errors import ConfigError, TrafficMirrorError

# Kafka protocol API keys, for `push_request_errors`.
API_PRODUCE = 0
API_FETCH = 1
API_METADATA = 3


def _load_librdkafka() -> ctypes.CDLL:
    import confluent_kafka

    libdir = os.path.join(
        os.path.dirname(confluent_kafka.__file__), os.pardir, "confluent_kafka.libs"
    )
    candidates = sorted(glob.glob(os.path.join(libdir, "librdkafka*.so*")))
    if not candidates:
        # A confluent-kafka built against a system librdkafka: use that one.
        candidates = ["librdkafka.so.1"]
    try:
        lib = ctypes.CDLL(candidates[0])
    except OSError as exc:
        raise TrafficMirrorError(f"cannot load librdkafka for the mock cluster: {exc}") from exc
    vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    lib.rd_kafka_conf_new.restype = vp
    lib.rd_kafka_conf_set.restype = ci
    lib.rd_kafka_conf_set.argtypes = [vp, cp, cp, cp, ctypes.c_size_t]
    lib.rd_kafka_new.restype = vp
    lib.rd_kafka_new.argtypes = [ci, vp, cp, ctypes.c_size_t]
    lib.rd_kafka_destroy.argtypes = [vp]
    lib.rd_kafka_mock_cluster_new.restype = vp
    lib.rd_kafka_mock_cluster_new.argtypes = [vp, ci]
    lib.rd_kafka_mock_cluster_destroy.argtypes = [vp]
    lib.rd_kafka_mock_cluster_bootstraps.restype = cp
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [vp]
    lib.rd_kafka_mock_topic_create.restype = ci
    lib.rd_kafka_mock_topic_create.argtypes = [vp, cp, ci, ci]
    lib.rd_kafka_mock_broker_set_down.restype = ci
    lib.rd_kafka_mock_broker_set_down.argtypes = [vp, ctypes.c_int32]
    lib.rd_kafka_mock_broker_set_up.restype = ci
    lib.rd_kafka_mock_broker_set_up.argtypes = [vp, ctypes.c_int32]
    lib.rd_kafka_mock_push_request_errors_array.restype = None
    lib.rd_kafka_mock_push_request_errors_array.argtypes = [
        vp,
        ctypes.c_int16,
        ctypes.c_size_t,
        ctypes.POINTER(ci),
    ]
    lib.rd_kafka_mock_clear_request_errors.restype = None
    lib.rd_kafka_mock_clear_request_errors.argtypes = [vp, ctypes.c_int16]
    for name in (
        "rd_kafka_mock_set_group_consumer_session_timeout_ms",
        "rd_kafka_mock_set_group_consumer_heartbeat_interval_ms",
    ):
        if hasattr(lib, name):  # librdkafka 2.10+
            getattr(lib, name).restype = None
            getattr(lib, name).argtypes = [vp, ci]
    return lib


def parse_topic_spec(spec: str, default_partitions: int) -> tuple[str, int]:
    """`NAME` or `NAME:PARTITIONS` → (name, partitions)."""
    name, sep, count = spec.partition(":")
    if not name:
        raise ConfigError(f"bad topic {spec!r}: expected NAME or NAME:PARTITIONS")
    if not sep:
        return name, default_partitions
    try:
        partitions = int(count)
    except ValueError:
        raise ConfigError(f"bad topic {spec!r}: partitions must be a whole number") from None
    if partitions < 1:
        raise ConfigError(f"bad topic {spec!r}: partitions must be at least 1")
    return name, partitions


class MockCluster:
    """A running librdkafka mock cluster; brokers have ids 1..`brokers`.

    `default_partitions` applies to `create_topic()` only: a topic a client
    auto-creates gets the mock's own default (4), which librdkafka offers no
    way to set.
    """

    def __init__(self, brokers: int = 3, default_partitions: int = 4) -> None:
        if brokers < 1:
            raise ConfigError("the mock cluster needs at least one broker")
        self._lib = _load_librdkafka()
        self.default_partitions = default_partitions
        self.brokers = brokers
        conf = self._lib.rd_kafka_conf_new()
        errstr = ctypes.create_string_buffer(512)
        # The handle only hosts the cluster; keep its own logging quiet.
        self._lib.rd_kafka_conf_set(conf, b"log_level", b"0", errstr, len(errstr))
        self._rk = self._lib.rd_kafka_new(0, conf, errstr, len(errstr))
        if not self._rk:
            raise TrafficMirrorError(f"cannot create a librdkafka handle: {errstr.value.decode()}")
        self._mcluster = self._lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        if not self._mcluster:
            self._lib.rd_kafka_destroy(self._rk)
            raise TrafficMirrorError("librdkafka could not start its mock cluster")
        self.bootstrap_servers: str = self._lib.rd_kafka_mock_cluster_bootstraps(
            self._mcluster
        ).decode()
        self._closed = False

    def create_topic(self, name: str, partitions: int | None = None) -> None:
        """Create `name` (the mock has no CreateTopics API, so tests and demo use this)."""
        count = partitions or self.default_partitions
        err = self._lib.rd_kafka_mock_topic_create(self._mcluster, name.encode(), count, 1)
        if err:
            raise TrafficMirrorError(f"mock cluster could not create topic {name!r} (error {err})")

    def broker_down(self, broker_id: int | None = None) -> None:
        """Take one broker (or every broker) off the network: connections are closed."""
        for bid in self._ids(broker_id):
            self._lib.rd_kafka_mock_broker_set_down(self._mcluster, bid)

    def broker_up(self, broker_id: int | None = None) -> None:
        """Bring a broker (or every broker) back."""
        for bid in self._ids(broker_id):
            self._lib.rd_kafka_mock_broker_set_up(self._mcluster, bid)

    def push_request_errors(self, api_key: int, errors: Sequence[int]) -> None:
        """Make the next requests of kind `api_key` fail with these Kafka error codes."""
        array = (ctypes.c_int * len(errors))(*errors)
        self._lib.rd_kafka_mock_push_request_errors_array(
            self._mcluster, api_key, len(errors), array
        )

    def set_group_consumer_timeouts(self, session_timeout_ms: int, heartbeat_ms: int) -> None:
        """KIP-848 groups: fence a member after `session_timeout_ms` without a heartbeat,
        and ask members to heartbeat every `heartbeat_ms`.

        Under the KIP-848 protocol these are broker settings
        (`group.consumer.session.timeout.ms`, `group.consumer.heartbeat.interval.ms`);
        a client's `session.timeout.ms` does not apply to them.
        """
        for name, value in (
            ("rd_kafka_mock_set_group_consumer_session_timeout_ms", session_timeout_ms),
            ("rd_kafka_mock_set_group_consumer_heartbeat_interval_ms", heartbeat_ms),
        ):
            if not hasattr(self._lib, name):
                raise TrafficMirrorError(f"this librdkafka has no {name} (needs 2.10+)")
            getattr(self._lib, name)(self._mcluster, value)

    def _ids(self, broker_id: int | None) -> range | list[int]:
        return range(1, self.brokers + 1) if broker_id is None else [broker_id]

    def close(self) -> None:
        """Stop the cluster and free it; the bootstrap servers stop answering."""
        if self._closed:
            return
        self._closed = True
        self._lib.rd_kafka_mock_cluster_destroy(self._mcluster)
        self._lib.rd_kafka_destroy(self._rk)

    def __enter__(self) -> MockCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(partitions: int, topics: Sequence[str], brokers: int = 3) -> int:
    """Run a mock cluster until SIGINT/SIGTERM (the `dev-kafka` command)."""
    cluster = MockCluster(brokers=brokers, default_partitions=partitions)
    try:
        for spec in topics:
            name, count = parse_topic_spec(spec, partitions)
            cluster.create_topic(name, count)
        stop = threading.Event()

        def _stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        # Before the line callers wait for: a caller that stops the cluster as
        # soon as it read the address must get a clean stop, not a kill.
        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        print(f"bootstrap.servers={cluster.bootstrap_servers}", flush=True)
        print(
            "in-memory mock cluster (test-grade, nothing is persisted); Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        cluster.close()
    return 0
