"""The mitmproxy addon, driven by mitmproxy's own test helpers against a real broker."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import exceptions, flow, hooks
from mitmproxy.addonmanager import traverse
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow

from recorder import addon as addon_module
from recorder.addon import RECORDED_MARK, Recorder
from recorder.parts import HOST_REWRITTEN
from tests.recorder.helpers import read_events
from tests.support import Kafka, free_port

ADDON_PATH = Path(addon_module.__file__)
OPTIONS = [
    "trafficmirror_bootstrap_servers",
    "trafficmirror_topic",
    "trafficmirror_kafka_property",
    "trafficmirror_kafka_config",
    "trafficmirror_max_body_bytes",
    "trafficmirror_recorder_id",
    "trafficmirror_schema_registry_url",
    "trafficmirror_flush_timeout",
    "trafficmirror_drain_timeout",
    "trafficmirror_metrics_host",
    "trafficmirror_metrics_port",
    "trafficmirror_redact_header",
    "trafficmirror_redact_json",
    "trafficmirror_redact_key_file",
    "trafficmirror_redact_defaults",
    "trafficmirror_filter",
]


def in_loop(func: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body on a fresh loop: taddons.context wants a running loop
    (without one it makes a loop of its own and never closes it)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(func(*args, **kwargs))

    return wrapper


def events(kafka: Kafka, topic: str, count: int) -> list[Any]:
    return read_events(kafka.bootstrap_servers, topic, count)


def configured(
    tctx: taddons.context, rec: Recorder, kafka: Kafka, topic: str, **extra: Any
) -> None:
    tctx.configure(
        rec,
        trafficmirror_bootstrap_servers=kafka.bootstrap_servers,
        trafficmirror_topic=topic,
        trafficmirror_recorder_id="rec-test",
        trafficmirror_flush_timeout="10",
        **extra,
    )


@in_loop
async def test_every_option_is_declared_with_help() -> None:
    rec = Recorder()
    with taddons.context(rec) as tctx:
        for name in OPTIONS:
            option = tctx.options._options[name]
            assert len(option.help) > 30, name
        assert tctx.options.trafficmirror_max_body_bytes == 1024 * 1024


@in_loop
async def test_inactive_until_servers_and_topic_are_set(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    with taddons.context(rec) as tctx:
        tctx.configure(rec, trafficmirror_topic="t")
        assert rec.sink is None
        f = tflow.tflow(resp=True)
        rec.response(f)
        assert RECORDED_MARK not in f.metadata
        with caplog.at_level(logging.WARNING, "recorder"):
            rec.running()
        assert "not recording" in caplog.text
        rec.done()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"trafficmirror_max_body_bytes": -1}, "must be 0 or more"),
        ({"trafficmirror_flush_timeout": "soon"}, "number of seconds"),
        ({"trafficmirror_flush_timeout": "-1"}, "number of seconds"),
        ({"trafficmirror_flush_timeout": "nan"}, "number of seconds"),
        ({"trafficmirror_metrics_port": 70000}, "out of range"),
        ({"trafficmirror_redact_header": ["Authorization=scramble"]}, "unknown mode"),
        ({"trafficmirror_redact_json": ["password"]}, "must start with"),
        ({"trafficmirror_redact_json": ["$.password=hmac"]}, "needs a key"),
        ({"trafficmirror_redact_key_file": "/nonexistent/key"}, "cannot read redaction key"),
        ({"trafficmirror_filter": "~m"}, "not a mitmproxy filter expression"),
        ({"trafficmirror_filter": "(~u /api"}, "trafficmirror_filter"),
        (
            {
                "trafficmirror_bootstrap_servers": "127.0.0.1:1",
                "trafficmirror_topic": "t",
                "trafficmirror_kafka_property": ["no-equals-sign"],
            },
            "expected key=value",
        ),
        (
            {
                "trafficmirror_bootstrap_servers": "127.0.0.1:1",
                "trafficmirror_topic": "t",
                "trafficmirror_kafka_property": ["no.such.property=1"],
            },
            "no.such.property",
        ),
        (
            {
                "trafficmirror_bootstrap_servers": "127.0.0.1:1",
                "trafficmirror_topic": "t",
                "trafficmirror_kafka_config": "/nonexistent/kafka.properties",
            },
            "cannot read Kafka config file",
        ),
        (
            {
                "trafficmirror_bootstrap_servers": "127.0.0.1:1",
                "trafficmirror_topic": "t",
                "trafficmirror_kafka_property": ["message.max.bytes=1000000"],
            },
            "--max-body-bytes 1048576 cannot be honoured with message.max.bytes=1000000: "
            "an event with two bodies at the cap needs 2375680 bytes",
        ),
        (
            {
                "trafficmirror_bootstrap_servers": "127.0.0.1:1",
                "trafficmirror_topic": "t",
                "trafficmirror_max_body_bytes": 600_000_000,
            },
            "over the Kafka client's limit",
        ),
    ],
)
@in_loop
async def test_bad_options_are_rejected(options: dict[str, Any], message: str) -> None:
    rec = Recorder()
    with taddons.context(rec) as tctx:
        with pytest.raises(exceptions.OptionsError, match=message):
            tctx.configure(rec, **options)
        assert rec.sink is None


@in_loop
async def test_the_filter_records_matching_flows_only_and_counts_the_others(
    kafka: Kafka, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    with taddons.context(rec) as tctx:
        configured(tctx, rec, kafka, topic, trafficmirror_filter="~u /api & ~c 200")
        wanted = tflow.tflow(resp=True)
        wanted.request.path = "/api/items"
        other_path = tflow.tflow(resp=True)
        other_path.request.path = "/static/x"
        other_status = tflow.tflow(resp=True)
        other_status.request.path = "/api/items"
        other_status.response.status_code = 500  # type: ignore[union-attr]
        failed = tflow.tflow(err=True)  # no response: ~c 200 cannot match
        failed.request.path = "/api/items"
        for f in (wanted, other_path, other_status):
            rec.response(f)
        rec.error(failed)
        other_path.error = flow.Error("client disconnected")
        rec.error(other_path)  # decided at the response: not recorded now either
        assert rec.filtered == 3
        tctx.configure(rec, trafficmirror_filter=None)  # unset: everything again
        everything = tflow.tflow(resp=True)
        everything.request.path = "/static/y"
        rec.response(everything)
        with caplog.at_level(logging.INFO, "recorder"):
            rec.done()
    assert "recorded=2 dropped=0 failed=0" in caplog.text
    assert "filtered=3" in caplog.text
    got = {event["id"] for _, event in events(kafka, topic, 2)}
    assert got == {wanted.id, everything.id}


@in_loop
async def test_records_response_and_error_flows_once(
    kafka: Kafka, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    with taddons.context(rec) as tctx:
        configured(tctx, rec, kafka, topic, trafficmirror_max_body_bytes=4)
        ok = tflow.tflow(resp=True)
        rec.response(ok)
        # An error after the response (client hung up while it was sent back)
        # must not record the exchange a second time.
        ok.error = flow.Error("client disconnected")
        rec.error(ok)
        failed = tflow.tflow(err=True)
        failed.request.headers["Host"] = "shop.example.com"
        rec.error(failed)
        assert rec.sink is not None
        with caplog.at_level(logging.INFO, "recorder"):
            rec.done()
    assert "recorded=2 dropped=0 failed=0" in caplog.text
    assert rec.sink is None

    got = {event["id"]: (msg, event) for msg, event in events(kafka, topic, 2)}
    assert set(got) == {ok.id, failed.id}
    msg, event = got[ok.id]
    assert msg.key() == ok.client_conn.id.encode()
    assert msg.timestamp()[1] == int(ok.request.timestamp_start * 1000)
    assert dict(msg.headers())["content-type"].startswith(b"application/avro")
    assert event["error"] is None
    assert event["request"]["body"] == b"cont"
    assert event["request"]["body_truncated"] is True
    assert event["request"]["body_length"] == len(b"content")
    assert event["response"]["status"] == 200
    assert event["recorder"] == {
        "recorder_id": "rec-test",
        "sampling_rate": 1.0,
        "redactions": [],
        "capture": "proxy",
    }
    _, event = got[failed.id]
    assert event["response"] is None
    assert event["error"] == "error"
    assert event["authority"] == "shop.example.com"


@in_loop
async def test_reverse_mode_without_keep_host_header_says_host_was_rewritten(
    kafka: Kafka, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    with taddons.context(rec) as tctx:
        with caplog.at_level(logging.WARNING, "recorder"):
            configured(tctx, rec, kafka, topic, mode=["reverse:http://127.0.0.1:8080"])
        assert "keep_host_header" in caplog.text
        f = tflow.tflow(resp=True)
        f.client_conn.proxy_mode = ProxyMode.parse("reverse:http://127.0.0.1:8080")
        rec.response(f)
        regular = tflow.tflow(resp=True)  # a regular-mode flow keeps its Host
        rec.response(regular)
        rec.done()
    got = {event["id"]: event for _, event in events(kafka, topic, 2)}
    assert got[f.id]["recorder"]["redactions"] == [HOST_REWRITTEN]
    assert got[regular.id]["recorder"]["redactions"] == []


@in_loop
async def test_replayed_flows_are_not_recorded(kafka: Kafka, topic: str) -> None:
    rec = Recorder()
    with taddons.context(rec) as tctx:
        configured(tctx, rec, kafka, topic)
        f = tflow.tflow(resp=True)
        f.is_replay = "request"
        rec.response(f)
        assert rec.sink is not None and rec.sink.stats.enqueued == 0
        rec.done()


@in_loop
async def test_broken_flow_is_counted_never_raised(
    kafka: Kafka, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    with taddons.context(rec) as tctx:
        configured(tctx, rec, kafka, topic)
        broken = tflow.tflow(resp=True)
        broken.request.data.timestamp_start = None  # type: ignore[assignment]
        with caplog.at_level(logging.WARNING, "recorder"):
            rec.response(broken)  # must not raise into mitmproxy
            rec.response(tflow.tflow(resp=True))
            rec.done()
    assert "cannot record exchange" in caplog.text
    assert "recorded=1 dropped=0 failed=1" in caplog.text
    assert "convert_failed=1" in caplog.text


@in_loop
async def test_reconfiguring_keeps_counting(kafka: Kafka, caplog: pytest.LogCaptureFixture) -> None:
    first, second = kafka.new_topic(1), kafka.new_topic(1)
    rec = Recorder()
    with taddons.context(rec) as tctx:
        configured(tctx, rec, kafka, first)
        rec.response(tflow.tflow(resp=True))
        tctx.configure(rec, trafficmirror_topic=second)
        rec.response(tflow.tflow(resp=True))
        with caplog.at_level(logging.INFO, "recorder"):
            rec.done()
    assert "recorded=2 dropped=0" in caplog.text
    assert len(events(kafka, first, 1)) == 1
    assert len(events(kafka, second, 1)) == 1


def test_health_endpoints(kafka: Kafka, topic: str) -> None:
    port = free_port()
    rec = Recorder()

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read().decode()

    async def scenario() -> None:
        with taddons.context(rec) as tctx:
            configured(tctx, rec, kafka, topic, trafficmirror_metrics_port=port)
            assert get("/readyz") == (503, "proxy not listening yet\n")
            rec.running()
            deadline = time.monotonic() + 10
            while get("/readyz")[0] != 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert get("/readyz") == (200, "ok\n")
            assert get("/healthz") == (200, "ok\n")
            status, text = get("/metrics")
            assert status == 200 and "trafficmirror_recorder_recorded_total" in text
            rec.done()

    asyncio.run(scenario())


@in_loop
async def test_loads_as_a_mitmproxy_script() -> None:
    with taddons.context() as tctx:
        module = tctx.script(str(ADDON_PATH))
        assert "trafficmirror_topic" in tctx.options
        # mitmproxy's wiring: the Drainer, a Mirror (idle unless trafficmirror_mirror),
        # then the Recorder (with its in-flight tracker as a child); their hooks are
        # the only handlers, in that order.
        [h2c, drainer, mirror, recorder] = module.addons
        assert type(h2c).__name__ == "PriorKnowledge"
        assert type(drainer).__name__ == "Drainer"
        assert type(mirror).__name__ == "Mirror"
        assert type(recorder).__name__ == "Recorder"
        expected: dict[str, list[Any]] = {"load": [recorder.load]}
        for name in ("configure", "running", "error"):
            expected[name] = [getattr(mirror, name), getattr(recorder, name)]
        expected["done"] = [drainer.done, mirror.done, recorder.done]
        expected["response"] = [drainer.response, mirror.response, recorder.response]
        expected["responseheaders"] = [drainer.responseheaders, recorder.responseheaders]
        # PriorKnowledge notes the client connections that sent gRPC (HTTP/2 upstream).
        expected["requestheaders"] = [
            h2c.requestheaders,
            mirror.requestheaders,
            recorder.requestheaders,
            recorder.inflight.requestheaders,
        ]
        expected["server_connect"] = [h2c.server_connect, mirror.server_connect]
        expected["client_disconnected"] = [h2c.client_disconnected]
        expected["next_layer"] = [h2c.next_layer]
        for name, handlers in expected.items():
            found = [getattr(a, name) for a in traverse([module]) if getattr(a, name, None)]
            assert found == handlers, name
        # Every hook is there on the module as "no handler", so mitmproxy's lookup never misses.
        missing = [n for n in hooks.all_hooks if n != "add_log" and n not in vars(module)]
        assert missing == []
        assert module.requestheaders is None and not hasattr(module, "add_log")


@in_loop
async def test_bodies_up_to_the_cap_are_kept_whole_past_the_default_message_size(
    kafka: Kafka, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Two bodies at the 1 MiB cap make an event over librdkafka's default
    # message.max.bytes (1,000,000): the producer's limit is sized from the cap.
    rec = Recorder()
    at_cap = bytes(range(256)) * 4096  # 1,048,576 bytes
    with taddons.context(rec) as tctx:
        configured(tctx, rec, kafka, topic)
        assert rec.sink is not None and rec.sink.max_message_bytes == 2 * len(at_cap) + 272 * 1024
        f = tflow.tflow(resp=True)
        f.request.content = at_cap
        f.response.content = at_cap[::-1]
        rec.response(f)
        with caplog.at_level(logging.INFO, "recorder"):
            rec.done()
    assert "recorded=1 dropped=0 failed=0" in caplog.text and "truncated=0" in caplog.text
    [(msg, event)] = events(kafka, topic, 1)
    assert len(msg.value()) > 2 * len(at_cap)
    for message, original in (
        (event["request"], at_cap),
        (event["response"]["message"], at_cap[::-1]),
    ):
        assert (message["body_truncated"], message["body"]) == (False, original)


@in_loop
async def test_an_event_over_kafkas_message_size_is_cut_to_fit(
    kafka: Kafka, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Headers beyond the room sized for them push an event with two bodies at
    # the cap over message.max.bytes: Kafka would refuse it whole.
    rec = Recorder()
    cap = 300_000
    big = bytes(range(256)) * 1200  # 307,200 bytes, cut to the cap when the event is built
    with taddons.context(rec) as tctx:
        configured(tctx, rec, kafka, topic, trafficmirror_max_body_bytes=cap)
        assert rec.sink is not None and rec.sink.max_message_bytes == 1_000_000
        f = tflow.tflow(resp=True)
        f.request.headers["X-Huge"] = "h" * 450_000
        f.request.content = big
        f.response.content = big[::-1]
        small = tflow.tflow(resp=True)
        rec.response(f)
        rec.response(small)
        with caplog.at_level(logging.INFO, "recorder"):
            rec.done()
    assert "recorded=2 dropped=0 failed=0" in caplog.text and "truncated=2" in caplog.text
    got = {event["id"]: (msg, event) for msg, event in events(kafka, topic, 2)}
    msg, event = got[f.id]
    assert len(msg.value()) < 1_000_000
    for message, original in ((event["request"], big), (event["response"]["message"], big[::-1])):
        assert message["body_truncated"] is True
        assert message["body_length"] == len(original)
        assert 200_000 < len(message["body"]) < cap
        assert message["body"] == original[: len(message["body"])]
    assert got[small.id][1]["request"]["body_truncated"] is False


@in_loop
async def test_redaction_options_apply_to_recorded_events(
    kafka: Kafka, topic: str, tmp_path: Path
) -> None:
    key = tmp_path / "key"
    key.write_text("0123456789abcdef0123456789abcdef\n")
    rec = Recorder()
    with taddons.context(rec) as tctx:
        configured(
            tctx,
            rec,
            kafka,
            topic,
            trafficmirror_redact_header=["X-Session=hmac", "Cookie=drop"],
            trafficmirror_redact_json=["$.password"],
            trafficmirror_redact_key_file=str(key),
        )
        f = tflow.tflow(resp=True)
        f.request.headers["X-Session"] = "abc"
        f.request.headers["Cookie"] = "c=1"
        f.request.headers["Authorization"] = "Basic xyz"
        f.request.headers["Content-Type"] = "application/json"
        f.request.content = b'{"password": "hunter2", "user": "ann"}'
        rec.response(f)
        rec.done()
    [(msg, event)] = events(kafka, topic, 1)
    assert b"hunter2" not in msg.value() and b"xyz" not in msg.value()
    headers = event["request"]["headers"]
    assert b"Cookie" not in headers
    assert headers[headers.index(b"X-Session") + 1].startswith(b"hmac-sha256:")
    assert headers[headers.index(b"Authorization") + 1] == b"***"
    assert event["recorder"]["redactions"] == [
        "request.header:x-session=hmac",
        "request.header:cookie=drop",
        "request.header:authorization=mask",
        "request.body:$.password=mask",
    ]
