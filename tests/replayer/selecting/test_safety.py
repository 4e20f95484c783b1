"""Replay safety: records recorded from the target's own host are refused unless allowed."""

from __future__ import annotations

import re
import socket

import pytest

from replayer.models import Skipped, Target
from replayer.selecting.safety import OriginalHostGuard, SafetyOptions, host_port
from replayer.sending.request import REPLAY_HEADER
from tests.replayer.consuming.test_worker import log, metrics, ready, start_worker, wait_until
from tests.replayer.events import make_event, produce_events
from tests.support import Kafka, Procs, run_cli
from trafficmirror.demo.apps import RecordingShadow


@pytest.mark.parametrize(
    ("authority", "scheme", "target", "same"),
    [
        ("shop.example.com", "http", "http://shop.example.com", True),
        ("SHOP.Example.COM.", "http", "http://shop.example.com:80", True),
        ("shop.example.com:80", "http", "http://shop.example.com", True),
        ("shop.example.com", "https", "https://shop.example.com:443", True),
        ("shop.example.com", "http", "https://shop.example.com", False),  # 80 vs 443
        ("shop.example.com:8080", "http", "http://shop.example.com", False),
        ("localhost:8080", "http", "http://127.0.0.1:8080", True),
        ("127.0.0.2:8080", "http", "http://localhost:8080", True),
        ("[::1]:8080", "http", "http://127.0.0.1:8080", True),
        ("[0:0:0:0:0:0:0:1]:8080", "http", "http://[::1]:8080", True),
        ("api.localhost:8080", "http", "http://127.0.0.1:8080", True),
        ("127.0.0.1:8080", "http", "http://127.0.0.1:8081", False),
        ("10.0.0.1", "http", "http://10.0.0.01", True),  # inet_aton reads 01 as octal 1
        ("10.0.0.8", "http", "http://10.0.0.010", True),  # octal 010
        ("127.0.0.1:8080", "http", "http://127.1:8080", True),
        ("10.0.0.1:8080", "http", "http://10.1:8080", True),  # 10.1 is 10.0.0.1
        ("10.0.0.1:8080", "http", "http://0x0a000001:8080", True),
        ("10.0.0.1:8080", "http", "http://167772161:8080", True),
        ("10.0.0.1:8080", "http", "http://0012.0.0.1:8080", True),
        ("10.0.0.1:8080", "http", "http://[::ffff:10.0.0.1]:8080", True),
        ("[::ffff:a00:1]:8080", "http", "http://10.0.0.1:8080", True),
        ("[2001:DB8::1]:8080", "http", "http://[2001:db8:0::1]:8080", True),
        ("localhost:8080", "http", "http://0.0.0.0:8080", True),  # "this host"
        ("localhost:8080", "http", "http://[::]:8080", True),
        ("LOCALHOST.:8080", "http", "http://2130706433:8080", True),
        ("10.0.0.1.:8080", "http", "http://0X0A000001:8080", True),  # trailing dot, case
        ("[FE80::1%25eth0]:8080", "http", "http://[fe80::1]:8080", True),  # a zone
        ("10.0.0.1:8080", "http", "http://10.0.0.2:8080", False),
        ("0x.example.com", "http", "http://0x.example.com", True),  # a name, not a number
        ("0x.example.com", "http", "http://0.example.com", False),
        ("shop.example.com", "http", "http://shadow.example.com", False),
        ("shop.example.com:bad", "http", "http://shop.example.com", False),
    ],
)
def test_what_counts_as_the_same_host(authority: str, scheme: str, target: str, same: bool) -> None:
    parsed = Target.parse(target)
    assert (host_port(authority, scheme) == host_port(parsed.host_port, parsed.scheme)) is same


def test_refused_unless_allowed_and_the_host_header_counts_when_authority_is_empty(
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = Target.parse("http://shop.example.com")
    guard = OriginalHostGuard(target)
    with pytest.raises(Skipped) as caught:
        guard.check(make_event(authority="shop.example.com"))
    assert caught.value.reason == "original-host"
    with pytest.raises(Skipped):
        guard.check(make_event(authority="", headers=[("Host", "Shop.Example.Com")]))
    guard.check(make_event(authority="other.example.com"))
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "REFUSED" in errors[0].getMessage()  # loud, once
    OriginalHostGuard(target, SafetyOptions(allow_original_host=True)).check(
        make_event(authority="shop.example.com")
    )


def events_for(shadow: RecordingShadow, count: int) -> list[dict[str, object]]:
    """`count` events, every other one recorded from the shadow's own host:port."""
    host = shadow.url.split("//", 1)[1].replace("127.0.0.1", "localhost")
    return [
        make_event(
            path=f"/{n}",
            authority=host if n % 2 else "shop.example.com",
            headers=[("Host", "x"), ("X-Seq", str(n))],
        )
        for n in range(count)
    ]


@pytest.mark.e2e
def test_replay_range_refuses_the_original_host_and_exits_1(kafka: Kafka) -> None:
    topic = kafka.new_topic(1)
    with RecordingShadow() as shadow:
        produce_events(kafka.bootstrap_servers, topic, events_for(shadow, 10))
        args = [
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
        ]
        refused = run_cli(args, timeout=60)
        first = sorted(int(r.header("X-Seq") or -1) for r in shadow.received)
        allowed = run_cli([*args, "--allow-original-host"], timeout=60)
        everything = shadow.received
    assert refused.returncode == 1, refused.stderr
    assert first == [0, 2, 4, 6, 8]
    assert "skipped-original-host 5" in refused.stdout
    assert refused.stderr.count("REFUSED") == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        "trafficmirror: 5 of 10 records could not be sent (errors 0, undecodable 0, "
        "refused as the original host 5 (see --allow-original-host))"
    )
    assert allowed.returncode == 0, allowed.stderr
    assert len(everything) == 15
    # Every replayed request is marked, whoever it was recorded from.
    assert all(r.header(REPLAY_HEADER) for r in everything)


@pytest.mark.e2e
def test_worker_refuses_the_original_host_and_keeps_going(kafka: Kafka, procs: Procs) -> None:
    topic = kafka.new_topic(2)
    with RecordingShadow() as shadow:
        produce_events(kafka.bootstrap_servers, topic, events_for(shadow, 20))
        worker, port = start_worker(procs, kafka, topic, f"g-{topic}", shadow, "w")
        wait_until("the worker", lambda: ready(port))
        wait_until(
            "the refusals",
            lambda: (
                re.search(
                    r'^trafficmirror_replayer_skipped_total\{reason="original-host"\} 10\.0$',
                    metrics(port),
                    re.M,
                )
                is not None
            ),
        )
        wait_until("the other records", lambda: len(shadow.received) >= 10)
        assert worker.stop() == 0
        received = shadow.received
    assert sorted(int(r.header("X-Seq") or -1) for r in received) == list(range(0, 20, 2))
    text = log(worker)
    assert text.count("REFUSED") == 1
    assert "skipped-original-host 10" in text


def test_the_recorded_upstream_counts_too() -> None:
    # The event's server address is the app the recorder forwarded to: production itself.
    guard = OriginalHostGuard(Target.parse("http://10.0.0.5:8080"))
    event = make_event(authority="shop.example.com")
    event["server"] = {"host": "::ffff:10.0.0.5", "port": 8080}
    with pytest.raises(Skipped) as caught:
        guard.check(event)
    assert "recorded upstream ::ffff:10.0.0.5:8080" in str(caught.value)
    event["server"] = {"host": "10.0.0.5", "port": 9090}  # another port: another service
    guard.check(event)
    event["server"] = None  # a mirror capture, or no connection was made
    guard.check(event)


def test_the_targets_name_is_resolved_once_and_its_addresses_compared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked_up: list[str] = []

    def getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list[object]:
        looked_up.append(host)
        if host != "shadow.internal":
            raise socket.gaierror("unknown")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    guard = OriginalHostGuard(Target.parse("http://shadow.internal:8080"))
    assert looked_up == ["shadow.internal"]  # at start, before any record
    for authority in ("10.0.0.5:8080", "0x0a000005:8080", "shadow.internal:8080"):
        with pytest.raises(Skipped):
            guard.check(make_event(authority=authority))
    guard.check(make_event(authority="10.0.0.6:8080"))
    guard.check(make_event(authority="shop.example.com:8080"))  # names are not looked up
    assert looked_up == ["shadow.internal"]
    # A target that does not resolve is compared by its name only.
    unknown = OriginalHostGuard(Target.parse("http://nowhere.invalid:8080"))
    unknown.check(make_event(authority="10.0.0.5:8080"))
    with pytest.raises(Skipped):
        unknown.check(make_event(authority="NOWHERE.invalid.:8080"))


@pytest.mark.e2e
def test_replay_range_sees_through_other_forms_of_the_same_address(kafka: Kafka) -> None:
    topic = kafka.new_topic(1)
    with RecordingShadow() as shadow:
        port = int(shadow.url.rsplit(":", 1)[1])
        forms: list[tuple[str, tuple[str, int] | None]] = [
            ("shop.example.com", ("10.9.9.9", 80)),  # sent
            (f"localhost:{port}", None),
            (f"127.1:{port}", None),
            (f"[::1]:{port}", None),
            ("shop.example.com", ("127.0.0.1", port)),  # the recorded upstream
            ("shop.example.com", ("::ffff:127.0.0.1", port)),
            (f"0.0.0.0:{port}", None),
            ("shop.example.com", None),  # sent
        ]
        events = []
        for n, (authority, server) in enumerate(forms):
            event = make_event(path=f"/{n}", authority=authority, headers=[("X-Seq", str(n))])
            event["server"] = None if server is None else {"host": server[0], "port": server[1]}
            events.append(event)
        produce_events(kafka.bootstrap_servers, topic, events)
        # The target is the shadow's address written as one number in hex.
        args = [
            "replay",
            "range",
            "-b",
            kafka.bootstrap_servers,
            "-t",
            topic,
            "--start-offset",
            "0",
        ]
        refused = run_cli([*args, "--target", f"http://0x7f000001:{port}"], timeout=60)
        received = sorted(int(r.header("X-Seq") or -1) for r in shadow.received)
    assert refused.returncode == 1, refused.stderr
    assert received == [0, 7]
    assert "skipped-original-host 6" in refused.stdout
    assert refused.stderr.count("REFUSED") == 1
    assert "Traceback" not in refused.stderr
