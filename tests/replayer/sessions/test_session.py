"""The replay session record and the clock arithmetic of `session set`."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replayer.sessions import session as sessions
from replayer.sessions.session import KEEP, Session, new_session, switched
from schemas.codec import SCHEMA_DIR, load_schema
from trafficmirror.plumbing.errors import ConfigError, DecodeError

T0 = 1_760_000_000_000_000  # a recorded time, µs
W0 = 1_790_000_000_000_000  # a wall-clock time, µs


def running(speed: float | None = 2.0, rate: float | None = 100.0) -> Session:
    return new_session(
        group="g",
        anchor_us=T0,
        start_at_us=W0,
        speed=speed,
        rate=rate,
        since_us=T0,
        until_us=T0 + 3_600_000_000,
        now_us=W0 - 1_000_000,
    )


def test_every_field_survives_encoding_and_decoding() -> None:
    session = running()
    value = sessions.encode(session)
    assert value[:2] == b"\xc3\x01"  # single-object encoding through the shared codec
    assert sessions.decode(value) == session
    at_max = running(speed=None, rate=None)
    assert sessions.decode(sessions.encode(at_max)) == at_max


def test_a_tombstone_is_no_session_and_garbage_is_a_decode_error() -> None:
    assert sessions.decode(None) is None
    with pytest.raises(DecodeError):
        sessions.decode(b"not a session")
    record = running().to_record()
    record["speed"] = -1.0  # writable by Avro, impossible as a session
    value = sessions.codec().encode(record).value
    with pytest.raises(DecodeError, match="speed"):
        sessions.decode(value)


def test_the_schema_documents_every_field_and_matches_the_dataclass() -> None:
    raw = json.loads((SCHEMA_DIR / "replay_session.v1.avsc").read_text())
    assert all(field.get("doc") for field in raw["fields"])
    assert [f["name"] for f in load_schema("replay_session")["fields"]] == list(Session.__slots__)


@pytest.mark.parametrize(
    ("speed", "rate"),
    [(0.0, None), (-2.0, None), (float("inf"), None), (1.0, 0.0), (1.0, float("nan"))],
)
def test_impossible_settings_are_refused(speed: float, rate: float | None) -> None:
    with pytest.raises(ConfigError):
        running(speed=speed, rate=rate)


def test_the_clock_maps_recorded_times_to_due_times() -> None:
    session = running(speed=2.0)
    assert session.due_us(T0) == W0
    assert session.due_us(T0 + 1_000_000) == W0 + 500_000
    assert session.virtual_us(W0 + 500_000) == T0 + 1_000_000
    assert running(speed=None).due_us(T0) is None


def test_set_continues_the_clock_at_the_switch_moment() -> None:
    old = running(speed=2.0)
    at = W0 + 10_000_000  # 10 s into the session: 20 s of recorded time replayed
    new = switched(old, at_us=at, now_us=at - 1_000_000, speed=0.5)
    assert (new.anchor_us, new.start_at_us) == (T0 + 20_000_000, at)
    assert new.speed == 0.5 and new.rate == 100.0  # rate kept
    assert new.session_id == old.session_id and new.revision == old.revision + 1
    assert (new.since_us, new.until_us) == (old.since_us, old.until_us)
    # What was due 1 s after the switch under the new speed: half a second of recording.
    assert new.due_us(T0 + 20_500_000) == at + 1_000_000


def test_set_before_the_session_started_only_changes_the_pace() -> None:
    old = running(speed=2.0)
    new = switched(old, at_us=W0 - 100, now_us=W0 - 200, speed=4.0, rate=None)
    assert (new.anchor_us, new.start_at_us) == (old.anchor_us, old.start_at_us)
    assert (new.speed, new.rate) == (4.0, None)


def test_set_from_max_restarts_the_clock_where_the_group_is() -> None:
    old = running(speed=None)
    at = W0 + 5_000_000
    new = switched(old, at_us=at, now_us=at, speed=1.0, restart_anchor_us=T0 + 123)
    assert (new.anchor_us, new.start_at_us) == (T0 + 123, at)
    with pytest.raises(ValueError, match="restart_anchor_us"):
        switched(old, at_us=at, now_us=at, speed=1.0)
    # A rate change at max speed needs no clock.
    assert switched(old, at_us=at, now_us=at, rate=5.0, speed=KEEP).speed is None


@given(
    speeds=st.lists(st.floats(0.01, 100.0), min_size=2, max_size=6),
    steps=st.lists(st.integers(1, 10**9), min_size=5, max_size=5),
)
def test_any_sequence_of_sets_keeps_the_timeline_continuous(
    speeds: list[float], steps: list[int]
) -> None:
    """At every switch, the old and the new revision agree to within a microsecond or so."""
    session = running(speed=speeds[0])
    at = W0
    for speed, step in zip(speeds[1:], steps, strict=False):
        at += step
        new = switched(session, at_us=at, now_us=at, speed=speed)
        before, after = session.virtual_us(at), new.virtual_us(at)
        assert before is not None and after is not None
        assert abs(before - after) <= 1
        # After the switch, recorded time advances at the new speed.
        later = new.virtual_us(at + 1_000_000)
        assert later is not None and abs(later - after - round(speed * 1_000_000)) <= 1
        session = new
