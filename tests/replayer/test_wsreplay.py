"""WebSocket sessions through the pipeline, to a real WebSocket server on a loopback socket.

What the pipeline does with each record of a session (upgrade, client and server
messages, end), when the session's one result is written and its upgrade's
future finishes, and what happens without an end, without an upgrade, with a
shadow that refuses the handshake or is not there, and when partitions go.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from replayer.comparing.noise import Rules
from replayer.models import Record, Result, Target
from replayer.pacing.clock import Pace, Scheduler
from replayer.pipeline import Pipeline
from replayer.results.stage import Comparison, ComparisonOptions
from replayer.sending.sender import MockTransport, OutgoingRequest, Response, Sender
from replayer.transforming.loader import parse_text
from replayer.transforming.stage import Transformer
from schemas.codec import Codec
from tests.replayer.events import make_event
from tests.replayer.results.test_stage import Collected
from tests.replayer.wsevents import ChatShadow, chat, ws_session
from tests.support import free_port
from trafficmirror.demo.apps import RecordingShadow

CODEC = Codec()

Main = Callable[[Pipeline, Callable[[int, dict[str, Any]], "asyncio.Future[Result]"]], Coroutine]


def run(
    target: str, main: Main, pace: Pace | None = None, transforms: str | None = None
) -> tuple[Collected, Pipeline]:
    """Run `main(pipeline, handle)` against `target`; returns the results written."""
    collected = Collected()
    comparison = Comparison(
        ComparisonOptions(rules=Rules()),
        topic="t",
        target=Target.parse(target),
        publisher=collected,
        replayer_id="r1",
    )
    holder: list[Pipeline] = []

    async def body() -> None:
        sender = Sender(MockTransport(lambda _: Response(200)), concurrency=4)
        transformer = None
        if transforms is not None:
            options = parse_text(transforms, "t.yaml", {"TOKEN": "t0k"})
            transformer = Transformer(options, Target.parse(target))
        pipeline = Pipeline(
            codec=CODEC,
            target=Target.parse(target),
            sender=sender,
            comparison=comparison,
            scheduler=Scheduler(pace or Pace(speed=None)),
            transformer=transformer,
        )
        holder.append(pipeline)

        def handle(offset: int, event: dict[str, Any]) -> asyncio.Future[Result]:
            key = f"{event['client']['host']}:{event['client']['port']}".encode()
            return pipeline.handle(Record("t", 0, offset, key, CODEC.encode(event).value))

        try:
            await main(pipeline, handle)
        finally:
            pipeline.websockets.close()
            await pipeline.websockets.client.aclose()
            await sender.aclose()

    asyncio.run(body())
    return collected, holder[0]


def test_ws_session_is_one_result_and_the_upgrade_finishes_last() -> None:
    events = ws_session(chat(["a", "b"], gap=0.05))

    async def main(pipeline: Pipeline, handle: Any) -> None:
        futures = [handle(n, e) for n, e in enumerate(events[:-1])]
        await asyncio.sleep(0.3)  # every message sent and answered, but no end yet
        assert all(f.done() for f in futures[1:]) and not futures[0].done()
        end = handle(len(events) - 1, events[-1])
        results = await asyncio.wait_for(asyncio.gather(*futures, end), 10)
        assert [r.kind for r in results] == ["sent"] + ["websocket"] * 5
        assert [r.detail for r in results[1:]] == [
            "client-message",
            "server-message",
            "client-message",
            "server-message",
            "end",
        ]
        assert pipeline.websockets.open == 0

    with ChatShadow("alice") as shadow:
        collected, pipeline = run(shadow.url, main)
        assert [h.data for h in shadow.heard] == ['{"say": "a"}', '{"say": "b"}']
        replay_marks = {h.headers.get("X-Trafficmirror-Replay") for h in shadow.heard}
    assert replay_marks == {events[0]["id"]}
    [result] = collected.results
    assert (result["id"], result["endpoint"], result["outcome"]) == (
        events[0]["id"],
        "WS /chat",
        "match",
    )
    assert result["shadow_status"] == 101
    # As fast as possible (no pace): the answers may come after both messages went out.
    assert all(d["noise"] and d["path"].endswith(".position") for d in result["differences"])
    assert "websocket messages: client 2 sent, server 2 expected, ends 1" in pipeline.stats.line()


def test_ws_without_an_end_the_session_ends_with_the_input() -> None:
    events = ws_session(chat(["a"]), with_end=False)

    async def main(pipeline: Pipeline, handle: Any) -> None:
        futures = [handle(n, e) for n, e in enumerate(events)]
        await asyncio.wait_for(asyncio.gather(*futures[1:]), 10)
        pipeline.websockets.end_of_input()
        assert await pipeline.websockets.wait_closed(10)
        assert futures[0].result().kind == "sent"

    with ChatShadow("bob") as shadow:
        collected, _ = run(shadow.url, main)
    [result] = collected.results
    assert result["outcome"] == "mismatch"
    assert [d["path"] for d in result["differences"]] == ["messages[1].user.name"]


def test_ws_refused_handshake_is_a_status_difference_and_messages_are_not_sent() -> None:
    events = ws_session(chat(["a"]))

    async def main(pipeline: Pipeline, handle: Any) -> None:
        results = await asyncio.wait_for(
            asyncio.gather(*(handle(n, e) for n, e in enumerate(events))), 10
        )
        assert results[0].kind == "sent"  # the shadow answered, with another status
        assert (results[1].kind, results[1].detail) == ("skipped", "websocket-not-connected")

    with RecordingShadow() as shadow:  # plain HTTP: answers the upgrade with 200
        collected, _ = run(shadow.url, main)
    [result] = collected.results
    assert (result["outcome"], result["shadow_status"]) == ("mismatch", 200)
    assert [(d["kind"], d["production"], d["shadow"]) for d in result["differences"]] == [
        ("status", "101", "200")
    ]


def test_ws_shadow_not_there_is_an_error() -> None:
    events = ws_session(chat(["a"]))

    async def main(pipeline: Pipeline, handle: Any) -> None:
        results = await asyncio.wait_for(
            asyncio.gather(*(handle(n, e) for n, e in enumerate(events))), 10
        )
        assert results[0].kind == "error"

    collected, pipeline = run(f"http://127.0.0.1:{free_port()}", main)
    [result] = collected.results
    assert result["outcome"] == "error" and result["error"]
    assert pipeline.stats.errors == 1


def test_ws_abandoned_partitions_leave_no_result_and_cancel_the_upgrade() -> None:
    events = ws_session(chat(["a"]))

    async def main(pipeline: Pipeline, handle: Any) -> None:
        upgrade = handle(0, events[0])
        await asyncio.wait_for(asyncio.gather(handle(1, events[1]), handle(2, events[2])), 10)
        assert pipeline.abandon({0}) == 1
        assert upgrade.cancelled()
        await asyncio.sleep(0.1)

    with ChatShadow() as shadow:
        collected, _ = run(shadow.url, main)
    assert collected.results == []


def test_ws_records_without_their_upgrade_and_unknown_kinds_are_skipped() -> None:
    orphan = ws_session(chat(["a"]))[1:]
    unknown = make_event(path="/x")
    unknown["kind"] = "quic_datagram"
    broken = make_event(path="/chat")
    broken["kind"] = "websocket_message"  # without its websocket record

    async def main(pipeline: Pipeline, handle: Any) -> None:
        results = [await handle(n, e) for n, e in enumerate([*orphan, unknown, broken])]
        assert [(r.kind, r.detail) for r in results] == [
            ("skipped", "websocket-no-upgrade"),
            ("skipped", "websocket-no-upgrade"),
            ("skipped", "websocket-no-upgrade"),
            ("skipped", "unknown-kind"),
            ("skipped", "unsendable"),
        ]

    collected, pipeline = run("http://127.0.0.1:9", main)
    outcomes = sorted((r["outcome"], r["error"].split(":")[0]) for r in collected.results)
    assert outcomes == [("skipped", "unknown-kind"), ("skipped", "websocket-no-upgrade")]
    assert pipeline.stats.skipped["websocket-no-upgrade"] == 3


def test_ws_http_requests_still_go_through_the_sender() -> None:
    seen: list[OutgoingRequest] = []

    async def main(pipeline: Pipeline, handle: Any) -> None:
        pipeline.sender.transport = MockTransport(lambda r: seen.append(r) or Response(200))
        result = await handle(0, make_event(path="/plain"))
        assert result.kind == "sent"

    run("http://127.0.0.1:9", main)
    assert [r.path for r in seen] == ["/plain"]


def test_ws_another_subprotocol_is_a_header_difference() -> None:
    events = ws_session(chat(["a"]))
    upgrade = events[0]
    upgrade["request"]["headers"] += [b"Sec-WebSocket-Protocol", b"chat.v2, chat.v1"]
    upgrade["response"]["message"]["headers"] += [b"Sec-WebSocket-Protocol", b"chat.v2"]

    async def main(pipeline: Pipeline, handle: Any) -> None:
        await asyncio.wait_for(asyncio.gather(*(handle(n, e) for n, e in enumerate(events))), 10)

    with ChatShadow() as shadow:  # chooses no subprotocol
        collected, _ = run(shadow.url, main)
    [result] = collected.results
    assert [
        (d["kind"], d["path"], d["production"], d["shadow"]) for d in result["differences"]
    ] == [("header", "sec-websocket-protocol", "chat.v2", None)]


def test_ws_messages_waiting_for_their_due_time_count_as_in_flight() -> None:
    """So a paced replay stops reading at its bound; an open session itself does not count
    (it may last for hours, and must not hold reading back)."""
    events = ws_session(chat(["a", "b"], gap=0.3))

    async def main(pipeline: Pipeline, handle: Any) -> None:
        futures = [handle(n, e) for n, e in enumerate(events)]
        # The two client messages and the end wait; the server messages are done at once.
        assert pipeline.in_flight == 3
        await asyncio.wait_for(asyncio.gather(*futures), 10)
        assert pipeline.in_flight == 0

    with ChatShadow() as shadow:
        collected, _ = run(shadow.url, main, Pace(speed=1.0))
    assert [r["outcome"] for r in collected.results] == ["match"]


def test_ws_a_stopped_replay_compares_open_sessions_with_what_they_have() -> None:
    """`replay range` interrupted: what is not due yet is dropped (read again on resume),
    the session is compared with the messages it got, its upgrade counts as done."""
    events = ws_session(chat(["a", "later"], gap=5.0), with_end=False)

    async def main(pipeline: Pipeline, handle: Any) -> None:
        futures = [handle(n, e) for n, e in enumerate(events)]
        await asyncio.wait_for(asyncio.gather(futures[1], futures[2]), 10)
        session = next(iter(pipeline.websockets.sessions.values()))
        assert session.connection is not None
        for _ in range(100):  # the answer to the first message
            if session.connection.received_count:
                break
            await asyncio.sleep(0.05)
        assert pipeline.scheduler is not None
        await pipeline.scheduler.aclose()  # what the range does first when it stops
        await asyncio.wait_for(pipeline.websockets.finish_all(), 10)
        assert futures[0].result().kind == "sent"
        assert futures[3].cancelled()  # the second client message, never due

    with ChatShadow() as shadow:
        collected, _ = run(shadow.url, main, Pace(speed=1.0))
        assert [h.data for h in shadow.heard] == ['{"say": "a"}']
    [result] = collected.results
    # The recording is incomplete (no end): the second answer missing is still listed.
    assert [d["path"] for d in result["differences"] if not d["noise"]] == [
        "messages.count",
        "messages[3]",
    ]


def test_ws_a_client_message_the_recorder_truncated_is_not_sent() -> None:
    events = ws_session(chat(["a", "b"]))
    cut = events[3]["websocket"]  # the second client message
    cut["payload_truncated"], cut["payload_length"] = True, 5000

    async def main(pipeline: Pipeline, handle: Any) -> None:
        results = await asyncio.wait_for(
            asyncio.gather(*(handle(n, e) for n, e in enumerate(events))), 10
        )
        assert (results[3].kind, results[3].detail) == ("skipped", "truncated")

    with ChatShadow() as shadow:
        collected, _ = run(shadow.url, main)
        assert [h.data for h in shadow.heard] == ['{"say": "a"}']
    [result] = collected.results
    # The answer it was never asked for is missing: noise, the recording's doing.
    assert result["outcome"] == "match"
    assert [d["path"] for d in result["differences"] if d["noise"]] == [
        "messages.count",
        "messages[3]",
    ]


def test_ws_max_gap_cuts_the_silences_between_client_messages() -> None:
    events = ws_session(chat(["a", "b", "c"], gap=1.0))

    async def main(pipeline: Pipeline, handle: Any) -> None:
        await asyncio.wait_for(asyncio.gather(*(handle(n, e) for n, e in enumerate(events))), 10)

    with ChatShadow() as shadow:
        collected, _ = run(shadow.url, main, Pace(speed=1.0, max_gap=0.1))
        heard = shadow.heard
    gaps = [b.at - a.at for a, b in zip(heard, heard[1:], strict=False)]
    # Recorded 1 s apart, cut to 0.1 s: paced (not sent at once), far from the recorded
    # second; bounds this loose because one message may be late and the next on time.
    assert len(gaps) == 2 and all(0.05 <= gap < 0.5 for gap in gaps), gaps
    assert [r["outcome"] for r in collected.results] == ["match"]


def test_ws_an_end_the_recorder_caused_by_stopping_is_not_compared_as_a_close() -> None:
    events = ws_session(chat(["a"]), close_code=1001, closed_by_client=False)
    events[-1]["error"] = "recorder stopped: the WebSocket connection was closed with 1001"
    client_1006 = ws_session(chat(["b"]), close_code=1006, closed_by_client=True)

    async def main(pipeline: Pipeline, handle: Any) -> None:
        sessions = [*events, *client_1006]
        await asyncio.wait_for(asyncio.gather(*(handle(n, e) for n, e in enumerate(sessions))), 10)

    with ChatShadow() as shadow:  # never closes on its own
        collected, _ = run(shadow.url, main)
    assert [(r["outcome"], r["differences"]) for r in collected.results] == [
        ("match", []),
        ("match", []),
    ]


def test_ws_message_paths_are_counted_together_in_the_report() -> None:
    from replayer.results.aggregate import aggregate_path

    assert aggregate_path("message", "messages[3]") == "messages[*]"
    assert aggregate_path("body_text", "messages[5] line 2") == "messages[*] line 2"
    assert aggregate_path("body_binary", "messages[1]") == "messages[*]"
    assert aggregate_path("message", "messages.count") == "messages.count"


def test_ws_transforms_apply_to_the_handshake_and_are_named_in_the_result() -> None:
    rules = """\
rules:
  - name: auth
    set_header: {name: Authorization, value: "Bearer ${TOKEN}"}
  - name: room
    replace_query: {pattern: "room=prod", with: "room=shadow"}
"""
    events = ws_session(chat(["a"]), path="/chat?room=prod")

    async def main(pipeline: Pipeline, handle: Any) -> None:
        await asyncio.wait_for(asyncio.gather(*(handle(n, e) for n, e in enumerate(events))), 10)

    with ChatShadow() as shadow:
        collected, _ = run(shadow.url, main, transforms=rules)
        [heard] = shadow.heard
    assert heard.headers["Authorization"] == "Bearer t0k"
    assert heard.path == "/chat?room=shadow"
    [result] = collected.results
    assert (result["outcome"], result["transforms"]) == ("match", ["auth", "room"])
