"""The replay's event loop: uvloop where installed, asyncio's on request, bad values refused."""

from __future__ import annotations

import asyncio
import importlib.util
import os

import pytest

from replayer.eventloop import ENV, loop_factory, loop_name, run
from tests.replayer.events import make_event, produce_events
from tests.support import Kafka, run_cli
from trafficmirror.demo.apps import RecordingShadow
from trafficmirror.plumbing.errors import UsageError

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_default_is_uvloop_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert loop_name() == ("uvloop" if HAS_UVLOOP else "asyncio")
    assert run(_loop_module()).startswith("uvloop" if HAS_UVLOOP else "asyncio")


def test_asyncio_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "asyncio")
    assert loop_factory() is None
    assert run(_loop_module()).startswith("asyncio")


def test_a_bad_value_is_a_usage_error_and_the_coroutine_is_not_left_unawaited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, "tokio")
    coro = _loop_module()
    with pytest.raises(UsageError, match="TRAFFICMIRROR_EVENT_LOOP='tokio'"):
        run(coro)
    assert coro.cr_frame is None  # closed: no "never awaited" warning (warnings are errors)


@pytest.mark.e2e
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_replay_range_on_either_loop(kafka: Kafka, loop: str) -> None:
    if loop == "uvloop" and not HAS_UVLOOP:
        pytest.skip("uvloop is not installed")
    topic = kafka.new_topic(1)
    produce_events(kafka.bootstrap_servers, topic, [make_event(path=f"/{n}") for n in range(5)])
    with RecordingShadow() as shadow:
        result = run_cli(
            [
                "-v",
                "replay",
                "range",
                "-b",
                kafka.bootstrap_servers,
                "-t",
                topic,
                "--target",
                shadow.url,
                "--start-offset",
                "0",
                "--no-results",
            ],
            timeout=60,
            env={**os.environ, ENV: loop},
        )
        received = shadow.received
    assert result.returncode == 0, result.stderr
    assert f"event loop: {loop}" in result.stderr
    assert sorted(r.path for r in received) == [f"/{n}" for n in range(5)]


def test_a_bad_loop_is_one_line_and_exit_2(kafka: Kafka) -> None:
    result = run_cli(
        [
            "replay",
            "range",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            "whatever",
            "--target",
            "http://127.0.0.1:9",
            "--start-offset",
            "0",
        ],
        timeout=60,
        env={**os.environ, ENV: "tokio"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "trafficmirror: error: TRAFFICMIRROR_EVENT_LOOP='tokio': expected one of uvloop, asyncio"
    ]
