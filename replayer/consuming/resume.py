"""Where an interrupted `replay range` got to, and the command that continues it.

Records of one partition finish out of order (concurrent requests), so "how
far it got" is, per partition, one past the longest prefix of the span that
finished (`offsets.OffsetTracker`): everything before it was replayed,
something at it was not. The command to continue is the one that was run
(its words, as typed), with the partition and offset options replaced by the
rest of each span: one command per group of partitions that continue at the
same offsets. A time window stays in it, its ends written out as absolute
times (the window is then read within those offsets). Values that look like
secrets (passwords, tokens, credentials in `-X` or `--set-header`) are shown
as `***`, so the line can be pasted into a ticket; the caller says so when it
happens.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence

from replayer.consuming.offsets import OffsetTracker
from replayer.consuming.spans import Span

#: Options `resume_commands` replaces (they name the range; a window's ends are
#: written out as absolute times, since `-1h` would mean another hour later).
_RANGE_OPTIONS = {"-p", "--partition", "--start-offset", "--end-offset", "--since", "--until"}
#: A secret-looking key of `-X key=value` or `--set-header Name: value`.
_SECRET_WORDS = re.compile(r"pass|secret|token|credential|auth|cookie|api[-_.]?key", re.I)
#: A secret-looking option (`--sasl-password`, `--sasl-oauthbearer-client-secret`).
_SECRET_OPTION = re.compile(r"pass|secret", re.I)
#: Options whose value is `NAME=VALUE` or `NAME: VALUE`: only a secret-looking NAME is masked.
_PAIR_OPTIONS = {"-X", "--kafka-property", "--set-header"}
MASK = "***"


def next_offsets(spans: Iterable[Span], tracker: OffsetTracker) -> dict[int, int]:
    """The first offset not replayed of each span that is not finished."""
    left: dict[int, int] = {}
    for span in spans:
        done = tracker.next_committable(span.partition)
        at = span.first if done is None else max(done, span.first)
        if at <= span.last:
            left[span.partition] = at
    return left


def resume_commands(
    argv: Sequence[str],
    spans: Iterable[Span],
    left: Mapping[int, int],
    window_ms: tuple[int | None, int | None] = (None, None),
) -> tuple[list[str], bool]:
    """Shell lines that replay what is `left` of `spans`, and whether a secret was masked.

    `argv`: the words after the program name, as run (`replay range ...`);
    `window_ms`: the time window it replayed (Unix ms, None = open).
    """
    words, masked = _without_range(argv)
    for option, ms in zip(("--since", "--until"), window_ms, strict=True):
        if ms is not None:
            words += [option, _iso(ms)]
    groups: dict[tuple[int, int], list[int]] = {}
    for span in sorted(spans, key=lambda s: s.partition):
        if span.partition in left:
            groups.setdefault((left[span.partition], span.last), []).append(span.partition)
    lines = []
    for (first, last), partitions in sorted(groups.items(), key=lambda item: item[1][0]):
        chosen = [w for p in partitions for w in ("-p", str(p))]
        offsets = ["--start-offset", str(first), "--end-offset", str(last)]
        lines.append(shlex.join(["trafficmirror", *words, *chosen, *offsets]))
    return lines, masked


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


def _without_range(argv: Sequence[str]) -> tuple[list[str], bool]:
    """`argv` without the range options, secrets masked; True if one was."""
    words: list[str] = []
    masked = False
    skip_value = False
    mask_next: str | None = None
    for word in argv:
        if skip_value:
            skip_value = False
            continue
        if mask_next is not None:
            value = _mask_value(mask_next, word)
            masked |= value != word
            words.append(value)
            mask_next = None
            continue
        name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if name in _RANGE_OPTIONS or (word[:2] == "-p" and word[2:].isdigit()):
            skip_value = not eq and name in _RANGE_OPTIONS
            continue
        if word.startswith("-X") and len(word) > 2:  # -Xkey=value
            shown = "-X" + _mask_value("-X", word[2:])
            masked |= shown != word
            words.append(shown)
            continue
        if name.startswith("--") and (name in _PAIR_OPTIONS or _SECRET_OPTION.search(name)):
            if eq:
                shown = f"{name}={_mask_value(name, value)}"
                masked |= shown != word
                words.append(shown)
                continue
            mask_next = name
        elif name in _PAIR_OPTIONS:
            mask_next = name
        words.append(word)
    return words, masked


def _mask_value(option: str, value: str) -> str:
    if option not in _PAIR_OPTIONS:
        return MASK  # --sasl-password and the like
    sep = ":" if option == "--set-header" else "="
    key, found, _ = value.partition(sep)
    if found and _SECRET_WORDS.search(key):
        return f"{key}{sep}{' ' if sep == ':' else ''}{MASK}"
    return value
