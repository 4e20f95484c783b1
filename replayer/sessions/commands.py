"""What `trafficmirror session start|set|show|stop` do (the CLI only parses and prints).

* start: a new session for the group, effective `lead` seconds from now, so
  that every worker has the record before the clock starts. Its anchor is
  `--since` when given (the replay starts there), otherwise the recorded time
  of the first record the group has not replayed (from its committed offsets),
  so nothing is skipped and nothing already replayed is waited for. A group
  that is fully caught up anchors at the start time itself: new records then
  come due at the requested pace from the moment they were recorded.
* set: the next revision, effective `lead` seconds from now, with the clock
  continued (`replayer.sessions.session.switched`).
* stop: the tombstone; workers go back to replaying as records arrive.
"""

from __future__ import annotations

import datetime as dt
import time

from replayer.sessions import store as store
from replayer.sessions.session import KEEP, Keep, Session, new_session, switched
from trafficmirror.plumbing.errors import UsageError
from trafficmirror.plumbing.kafka import KafkaSettings, control_topic

#: Default seconds between writing a new session and its clock starting: the
#: first session may also have to create the control topic, which workers look
#: for every half second.
START_LEAD = 2.0
#: Default seconds between writing a revision and every worker switching to it.
LEAD = 1.0


def now_us() -> int:
    return time.time_ns() // 1000


def start(
    settings: KafkaSettings,
    topic: str,
    group: str,
    *,
    speed: float | None,
    rate: float | None,
    since_us: int | None = None,
    until_us: int | None = None,
    lead: float = START_LEAD,
) -> Session:
    """Publish a new session for `group`; refuses if one is running (`UsageError`)."""
    store.ensure_control_topic(settings, topic)
    current = store.read_session(settings, topic, group)
    if current is not None:
        raise UsageError(
            f"group {group!r} already has session {current.session_id} (revision "
            f"{current.revision}): change it with 'session set' or end it with 'session stop'"
        )
    anchor = since_us
    if anchor is None:
        anchor = store.group_position_us(settings, topic, group)
    writer = store.ControlWriter(settings, topic)
    writer.connect()
    now = now_us()
    start_at = now + round(lead * 1_000_000)
    session = new_session(
        group=group,
        anchor_us=start_at if anchor is None else anchor,
        start_at_us=start_at,
        speed=speed,
        rate=rate,
        since_us=since_us,
        until_us=until_us,
        now_us=now,
    )
    writer.write(group, session)
    return session


def change(
    settings: KafkaSettings,
    topic: str,
    group: str,
    *,
    speed: float | None | Keep = KEEP,
    rate: float | None | Keep = KEEP,
    lead: float = LEAD,
) -> tuple[Session, Session]:
    """Publish the next revision of the group's session; (old, new)."""
    current = store.read_session(settings, topic, group)
    if current is None:
        raise UsageError(f"group {group!r} has no replay session: start one with 'session start'")
    restart = None
    new_speed = current.speed if speed is KEEP else speed
    if current.speed is None and new_speed is not None:
        # No clock ran at max speed: the new one starts where the group is (looked
        # up before the switch moment is stamped, as it takes a moment).
        restart = store.group_position_us(settings, topic, group)
    writer = store.ControlWriter(settings, topic)
    writer.connect()
    now = now_us()
    at = now + round(lead * 1_000_000)
    if restart is None and current.speed is None:
        restart = at  # the group is caught up: the clock starts at the switch itself
    new = switched(current, at_us=at, now_us=now, speed=speed, rate=rate, restart_anchor_us=restart)
    writer.write(group, new)
    return current, new


def show(settings: KafkaSettings, topic: str, group: str) -> Session | None:
    """The group's session in effect, None if it has none."""
    return store.read_session(settings, topic, group)


def stop(settings: KafkaSettings, topic: str, group: str) -> Session | None:
    """End the group's session (the one ended, None if there was none)."""
    current = store.read_session(settings, topic, group)
    if current is not None:
        store.publish(settings, topic, group, None)
    return current


def describe(session: Session, topic: str, now: int | None = None) -> list[str]:
    """Lines for `session show`."""
    now = now_us() if now is None else now
    speed = (
        "max (as fast as rate and concurrency allow)"
        if session.speed is None
        else (f"{session.speed:g}x")
    )
    rate = "none" if session.rate is None else f"{session.rate:g} requests/s for the group"
    lines = [
        f"session {session.session_id} of group {session.group!r} on {control_topic(topic)}, "
        f"revision {session.revision} by {session.created_by or '?'} at "
        f"{_time(session.created_at_us)}",
        f"  speed: {speed}",
        f"  rate: {rate}",
        f"  clock: recorded {_time(session.anchor_us)} is due at {_time(session.start_at_us)}",
    ]
    virtual = session.virtual_us(now)
    if virtual is not None and now >= session.start_at_us:
        lines.append(f"  now: the clock is at recorded {_time(virtual)}")
    elif now < session.start_at_us:
        lines.append(f"  takes effect in {(session.start_at_us - now) / 1e6:.1f}s")
    if session.since_us is not None or session.until_us is not None:
        since = "-" if session.since_us is None else _time(session.since_us)
        until = "-" if session.until_us is None else _time(session.until_us)
        lines.append(f"  window: since {since} until {until}")
    return lines


def _time(us: int) -> str:
    moment = dt.datetime.fromtimestamp(us / 1_000_000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
