"""Compare a replayed WebSocket session: the shadow's messages against the recorded server's.

`compare_session()` is pure: the recorded messages (both directions), the
client messages that were sent and the shadow's messages in, `Difference`s
out. The client's messages are the recorded ones, sent as they were, so the
server's are compared: their count (`messages.count`), then one by one in
order, each at the recorded message's path (`messages[3]`): text or binary
(`messages[3].type`), and the payload: JSON text under the noise rules,
structurally (`messages[3].user.name`), other text by line, binary by size and
hash, a recorded payload the recorder truncated by its prefix and length. Where
a shadow message falls between the client's messages depends on timing, so a
different place (`messages[3].position`) is noise. The close is compared too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from replayer.comparing.diff import MAX_BODY_DIFFERENCES, Difference, diff_json, diff_text, short
from replayer.comparing.noise import Rules
from replayer.models import WebSocketMessage

#: Missing or extra messages listed one by one at most (the count says the rest).
MAX_LISTED_MESSAGES = 10


@dataclass(frozen=True, slots=True)
class Close:
    """How a connection ended: who closed it and with which code (None: no code, or open)."""

    by_client: bool | None  # None: it did not end (the shadow kept it open)
    code: int | None = None

    def describe(self) -> str:
        if self.by_client is None:
            return "still open"
        who = "client" if self.by_client else "server"
        return f"{who} closed ({self.code})" if self.code is not None else f"{who} closed"


@dataclass(frozen=True, slots=True)
class SessionView:
    """What the comparison needs of one side of a session.

    `messages`: the messages kept (the recorded server's or the shadow's; for
    the recording, both directions in recorded order). `server_count`: how many
    server messages there were, kept or not. `complete`: the recording holds
    the whole session (its end was read and nothing was left out); when not,
    more shadow messages than recorded are noise. `unsent`: recorded client
    messages that could not be sent (index and why). `skipped_client`: client
    messages deliberately not sent (truncated by the recorder): then fewer
    shadow messages are noise too (the shadow was never asked).
    """

    messages: Sequence[WebSocketMessage]
    server_count: int
    close: Close | None = None
    complete: bool = True
    unsent: Sequence[tuple[int, str]] = ()
    skipped_client: int = 0


def describe(message: WebSocketMessage) -> str:
    """A short display of a message: direction, type, size and its start."""
    who = "client" if message.from_client else "server"
    kind = "text" if message.text else "binary"
    if message.text:
        start = message.payload[:60].decode("utf-8", "backslashreplace")
        return short(f"{who} {kind} {message.length} bytes: {start}")
    digest = hashlib.sha256(message.payload).hexdigest()[:16]
    return f"{who} {kind} {message.length} bytes sha256:{digest}"


def compare_session(
    recorded: SessionView, shadow: SessionView, rules: Rules | None = None
) -> list[Difference]:
    """Every difference between the recorded session and the shadow's (see the module doc)."""
    rules = rules or Rules()
    out: list[Difference] = []
    for index, why in recorded.unsent[:MAX_LISTED_MESSAGES]:
        wanted = next((m for m in recorded.messages if m.index == index), None)
        shown = describe(wanted) if wanted is not None else f"client message {index}"
        out.append(Difference("message", f"messages[{index}]", shown, f"not sent: {why}"))
    expected = [m for m in recorded.messages if not m.from_client]
    got = [m for m in shadow.messages if not m.from_client]
    if recorded.server_count != shadow.server_count:
        out.append(
            Difference(
                "message",
                "messages.count",
                str(recorded.server_count),
                str(shadow.server_count),
                noise=(not recorded.complete and shadow.server_count > recorded.server_count)
                or bool(recorded.skipped_client),
            )
        )
    for want, have in zip(expected, got, strict=False):
        out.extend(compare_message(want, have, rules))
        if len(out) >= MAX_BODY_DIFFERENCES:
            return out[:MAX_BODY_DIFFERENCES]
    for want in expected[len(got) : len(got) + MAX_LISTED_MESSAGES]:
        out.append(
            Difference(
                "message",
                f"messages[{want.index}]",
                describe(want),
                None,
                noise=bool(recorded.skipped_client),
            )
        )
    extra = got[len(expected) : len(expected) + MAX_LISTED_MESSAGES]
    if len(expected) == recorded.server_count:  # else the unkept ones would show as extra
        for number, have in enumerate(extra, start=len(expected)):
            out.append(
                Difference(
                    "message",
                    f"messages.extra[{number}]",
                    None,
                    describe(have),
                    noise=not recorded.complete,
                )
            )
    if recorded.close is not None and shadow.close is not None and recorded.complete:
        if _close_differs(recorded.close, shadow.close):
            out.append(
                Difference("message", "close", recorded.close.describe(), shadow.close.describe())
            )
    return out[:MAX_BODY_DIFFERENCES]


def _close_differs(production: Close, shadow: Close) -> bool:
    if production.by_client:
        # The replay closes as the client did; only a shadow that closed first differs.
        return shadow.by_client is False
    return production.by_client != shadow.by_client or production.code != shadow.code


def compare_message(
    want: WebSocketMessage, have: WebSocketMessage, rules: Rules
) -> list[Difference]:
    """Differences of one server message: its place, its type, its payload."""
    at = f"messages[{want.index}]"
    out: list[Difference] = []
    if want.after_client != have.after_client:
        out.append(
            Difference(
                "message",
                f"{at}.position",
                f"after client message {want.after_client}",
                f"after client message {have.after_client}",
                noise=True,
            )
        )
    if want.text != have.text:
        kinds = ("text", "binary")
        out.append(Difference("message", f"{at}.type", kinds[not want.text], kinds[not have.text]))
    if want.truncated or have.truncated:
        return out + _compare_prefix(at, want, have)
    if want.payload == have.payload:
        return out
    if want.text and have.text:
        return out + _compare_text(at, want.payload, have.payload, rules)
    return out + [Difference("body_binary", at, _bytes(want), _bytes(have))]


def _compare_text(at: str, a: bytes, b: bytes, rules: Rules) -> list[Difference]:
    text_a = rules.normalise_text(a.decode("utf-8", "replace"))
    text_b = rules.normalise_text(b.decode("utf-8", "replace"))
    if text_a == text_b:
        return []
    if _looks_json(text_a) or _looks_json(text_b):
        doc_a, doc_b = _json(text_a), _json(text_b)
        if doc_a is not _NOT_JSON and doc_b is not _NOT_JSON:
            return [_under(at, d) for d in diff_json(doc_a, doc_b, rules)]
    if "\n" not in text_a and "\n" not in text_b:
        return [Difference("body_text", at, short(text_a), short(text_b))]
    return [
        Difference("body_text", f"{at} {d.path}", d.production, d.shadow)
        for d in diff_text(text_a, text_b)
    ]


def _under(at: str, diff: Difference) -> Difference:
    """A JSON difference at `$...` moved under the message: `messages[3].user.name`."""
    rest = diff.path[1:] if diff.path.startswith("$") else f".{diff.path}"
    return Difference(diff.kind, at + rest, diff.production, diff.shadow, diff.noise)


_NOT_JSON = object()


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


def _looks_json(text: str) -> bool:
    return text.lstrip()[:1] in ("{", "[")


def _bytes(message: WebSocketMessage) -> str:
    digest = hashlib.sha256(message.payload).hexdigest()[:16]
    if message.truncated:
        return f"{message.length} bytes (first {len(message.payload)} sha256:{digest})"
    return f"{message.length} bytes sha256:{digest}"


def _compare_prefix(at: str, want: WebSocketMessage, have: WebSocketMessage) -> list[Difference]:
    """Only the first bytes were kept on some side: compare those and the whole lengths."""
    n = min(len(want.payload), len(have.payload))
    if want.payload[:n] == have.payload[:n] and want.length == have.length:
        return []
    return [Difference("body_binary", at, _bytes(want), _bytes(have))]
