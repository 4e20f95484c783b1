"""compare_session: count, order, type, payload (JSON under the noise rules, text, bytes), close."""

from __future__ import annotations

import json

import pytest

from replayer.comparing.diff import Difference
from replayer.comparing.noise import build_rules
from replayer.comparing.websocket import Close, SessionView, compare_session
from replayer.models import WebSocketMessage


def msg(
    index: int,
    payload: bytes | dict[str, object],
    *,
    client: bool = False,
    text: bool = True,
    after: int = 0,
    length: int | None = None,
    truncated: bool = False,
) -> WebSocketMessage:
    data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
    return WebSocketMessage(
        index=index,
        from_client=client,
        text=text,
        payload=data,
        length=len(data) if length is None else length,
        truncated=truncated,
        after_client=after,
    )


def chat(*answers: dict[str, object] | bytes) -> list[WebSocketMessage]:
    """Recorded: the client says something before each answer."""
    out = []
    for n, answer in enumerate(answers):
        out.append(msg(2 * n, b'{"say": "x"}', client=True, after=n))
        out.append(msg(2 * n + 1, answer, after=n + 1))
    return out


def shadow_of(*answers: dict[str, object] | bytes, after: list[int] | None = None) -> SessionView:
    places = after or list(range(1, len(answers) + 1))
    received = [msg(n, a, after=places[n]) for n, a in enumerate(answers)]
    return SessionView(received, len(received), Close(True))


def recorded_of(*answers: dict[str, object] | bytes, complete: bool = True) -> SessionView:
    return SessionView(chat(*answers), len(answers), Close(True, 1000), complete=complete)


def paths(diffs: list[Difference], noise: bool = False) -> list[str]:
    return [d.path for d in diffs if d.noise == noise]


A = {"user": {"name": "alice"}, "n": 1}
B = {"user": {"name": "alice"}, "n": 2}


def test_ws_identical_sessions_have_no_difference() -> None:
    assert compare_session(recorded_of(A, B), shadow_of(A, B)) == []


def test_ws_a_changed_json_field_is_named_under_its_message() -> None:
    changed = {"user": {"name": "bob"}, "n": 2}
    diffs = compare_session(recorded_of(A, B), shadow_of(A, changed))
    assert diffs == [Difference("body_json", "messages[3].user.name", '"alice"', '"bob"')]


def test_ws_noise_rules_apply_to_each_json_message() -> None:
    rules = build_rules(ignore_paths=["$.n"])
    diffs = compare_session(recorded_of(A, B), shadow_of({**A, "n": 7}, B), rules)
    assert paths(diffs) == [] and paths(diffs, noise=True) == ["messages[1].n"]


def test_ws_missing_and_extra_messages_are_counted_and_listed() -> None:
    missing = compare_session(recorded_of(A, B), shadow_of(A))
    assert [(d.kind, d.path, d.production, d.shadow) for d in missing][0] == (
        "message",
        "messages.count",
        "2",
        "1",
    )
    assert paths(missing) == ["messages.count", "messages[3]"]
    extra = compare_session(recorded_of(A), shadow_of(A, B))
    assert paths(extra) == ["messages.count", "messages.extra[1]"]


def test_ws_an_incomplete_recording_makes_more_shadow_messages_noise() -> None:
    diffs = compare_session(recorded_of(A, complete=False), shadow_of(A, B))
    assert paths(diffs) == [] and paths(diffs, noise=True) == [
        "messages.count",
        "messages.extra[1]",
    ]


def test_ws_type_text_and_binary_payloads() -> None:
    recorded = recorded_of(b"\x00\x01")
    recorded.messages[1].text = False
    diffs = compare_session(recorded, shadow_of(b"\x00\x02"))
    assert [(d.kind, d.path) for d in diffs] == [
        ("message", "messages[1].type"),
        ("body_binary", "messages[1]"),
    ]
    assert compare_session(recorded_of(b"plain words"), shadow_of(b"other words")) == [
        Difference("body_text", "messages[1]", "plain words", "other words")
    ]


@pytest.mark.parametrize(
    ("shadow_payload", "differs"),
    [(b"0123456789", False), (b"0123456789x", True), (b"01X3456789", True), (b"01234X6789", False)],
    ids=["same-prefix-same-length", "longer", "other-prefix", "differs-past-the-prefix"],
)
def test_ws_truncated_recorded_payload_compares_by_prefix(
    shadow_payload: bytes, differs: bool
) -> None:
    recorded = SessionView(
        [msg(0, b"0123", length=10, truncated=True, text=False)], 1, Close(True, 1000)
    )
    shadow = SessionView([msg(0, shadow_payload, text=False)], 1, Close(True))
    diffs = compare_session(recorded, shadow)
    assert bool(diffs) is differs
    assert all(d.path == "messages[0]" for d in diffs)


def test_ws_place_between_client_messages_is_noise() -> None:
    diffs = compare_session(recorded_of(A, B), shadow_of(A, B, after=[1, 1]))
    assert paths(diffs) == [] and paths(diffs, noise=True) == ["messages[3].position"]


def test_ws_close_by_the_server_is_compared() -> None:
    recorded = SessionView(chat(A), 1, Close(False, 1000))
    same = SessionView([msg(0, A, after=1)], 1, Close(False, 1000))
    other = SessionView([msg(0, A, after=1)], 1, Close(False, 1011))
    open_ = SessionView([msg(0, A, after=1)], 1, Close(None))
    assert compare_session(recorded, same) == []
    assert compare_session(recorded, other) == [
        Difference("message", "close", "server closed (1000)", "server closed (1011)")
    ]
    assert paths(compare_session(recorded, open_)) == ["close"]
    # The client closed in production: a shadow that closed first differs, one left open not.
    by_client = SessionView(chat(A), 1, Close(True, 1000))
    assert compare_session(by_client, open_) == []
    assert paths(compare_session(by_client, other)) == ["close"]


def test_ws_client_messages_not_sent_are_listed() -> None:
    recorded = SessionView(chat(A), 1, Close(True, 1000), unsent=[(0, "the shadow closed")])
    diffs = compare_session(recorded, SessionView([], 0, Close(False, 1011)))
    assert paths(diffs)[:2] == ["messages[0]", "messages.count"]
    assert diffs[0].shadow == "not sent: the shadow closed"
