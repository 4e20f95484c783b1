"""The replay session: one clock, speed and rate shared by every worker of a group.

A session is one `ReplaySession` record (`schemas/replay_session.v1.avsc`) on
`<topic>.control`, keyed by the consumer group; the topic is compacted, so the
newest record per group is the session in effect and a tombstone (null value)
ends it. Every worker derives the same virtual clock from it (`Session`), so
workers that never talk to each other send their partitions' records in one
shared timeline, and the group as a whole keeps the recorded pace (or twice
it). A change to a running session (`switched`) takes effect at one moment
for every worker, without making the timeline jump.
"""

from __future__ import annotations

import enum
import getpass
import math
import socket
import uuid
from dataclasses import dataclass, replace

from schemas.codec import Codec
from schemas.records import ReplaySession
from trafficmirror.plumbing.errors import ConfigError, DecodeError

SCHEMA = "replay_session"


class Keep(enum.Enum):
    """Marks a setting that `switched` leaves as it is (None means "max"/"no limit")."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class Session:
    """One revision of a group's replay session.

    A record recorded at time r is due at `start_at + (r - anchor) / speed`;
    `speed` None is "as fast as possible" (no clock; only the rate limit and
    concurrency hold it back). `max_gap` (compressing idle stretches) is
    deliberately not part of a session: a stretch that is idle in one worker's
    partitions is not idle in another's, so each worker would compress
    differently and the shared clock would fall apart.
    """

    group: str
    session_id: str
    revision: int
    anchor_us: int
    start_at_us: int
    speed: float | None
    rate: float | None
    since_us: int | None = None
    until_us: int | None = None
    created_at_us: int = 0
    created_by: str = ""

    def __post_init__(self) -> None:
        check_speed(self.speed)
        check_rate(self.rate)
        if self.since_us is not None and self.until_us is not None:
            if self.since_us >= self.until_us:
                raise ConfigError("a session's since must be before its until")

    def virtual_us(self, wall_us: int) -> int | None:
        """The recorded time due at wall-clock time `wall_us`; None at max speed."""
        if self.speed is None:
            return None
        return self.anchor_us + round((wall_us - self.start_at_us) * self.speed)

    def due_us(self, recorded_us: int) -> int | None:
        """When a record recorded at `recorded_us` is due (wall clock); None at max speed."""
        if self.speed is None:
            return None
        return self.start_at_us + round((recorded_us - self.anchor_us) / self.speed)

    @property
    def window_ms(self) -> tuple[int | None, int | None]:
        """`since`/`until` in Kafka timestamp milliseconds (since rounded down, until up)."""
        since = None if self.since_us is None else self.since_us // 1000
        until = None if self.until_us is None else -(-self.until_us // 1000)
        return since, until

    def to_record(self) -> ReplaySession:
        """The Avro record (field names are the schema's)."""
        return {
            "group": self.group,
            "session_id": self.session_id,
            "revision": self.revision,
            "anchor_us": self.anchor_us,
            "start_at_us": self.start_at_us,
            "speed": self.speed,
            "rate": self.rate,
            "since_us": self.since_us,
            "until_us": self.until_us,
            "created_at_us": self.created_at_us,
            "created_by": self.created_by,
        }

    @classmethod
    def from_record(cls, record: ReplaySession) -> Session:
        """From a decoded Avro record; raises `DecodeError` if its values are impossible."""
        try:
            return cls(**{name: record[name] for name in _FIELDS})  # type: ignore[literal-required]
        except (ConfigError, KeyError, TypeError) as exc:
            raise DecodeError(f"unusable replay session record: {exc}") from None


_FIELDS = Session.__slots__


def check_speed(speed: float | None) -> None:
    """A speed is None (max) or a finite number > 0; raises `ConfigError`."""
    if speed is not None and not (math.isfinite(speed) and speed > 0):
        raise ConfigError(f"speed must be a number above 0 or max, not {speed!r}")


def check_rate(rate: float | None) -> None:
    """A rate is None (no limit) or a finite number > 0 (requests/s); raises `ConfigError`."""
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise ConfigError(f"rate must be a number of requests/s above 0, not {rate!r}")


def new_session(
    *,
    group: str,
    anchor_us: int,
    start_at_us: int,
    speed: float | None,
    rate: float | None,
    since_us: int | None,
    until_us: int | None,
    now_us: int,
) -> Session:
    """Revision 1 of a fresh session with a new id."""
    return Session(
        group=group,
        session_id=uuid.uuid4().hex[:12],
        revision=1,
        anchor_us=anchor_us,
        start_at_us=start_at_us,
        speed=speed,
        rate=rate,
        since_us=since_us,
        until_us=until_us,
        created_at_us=now_us,
        created_by=author(),
    )


def switched(
    current: Session,
    *,
    at_us: int,
    now_us: int,
    speed: float | None | Keep = KEEP,
    rate: float | None | Keep = KEEP,
    restart_anchor_us: int | None = None,
) -> Session:
    """The next revision of `current`, effective at wall-clock time `at_us`.

    The timeline must not jump: the new revision starts at `at_us` (a little
    ahead, so every worker has it by then and switches at the same moment)
    with the anchor set to the virtual time the old revision reaches there,
    `anchor' = anchor + (at - start_at) * speed_old`, `start_at' = at`. Both
    revisions agree at `at_us`; before it the old one holds. Two cases
    have no old clock to continue: a session that has not started yet at
    `at_us` keeps its anchor and start (only the pace changes), and one that
    ran at max speed restarts its clock at `restart_anchor_us` (the recorded
    time of the group's position, which the caller looks up), required then.
    """
    new_speed = current.speed if speed is KEEP else speed
    new_rate = current.rate if rate is KEEP else rate
    if at_us <= current.start_at_us:
        anchor, start = current.anchor_us, current.start_at_us
    elif current.speed is None:
        if restart_anchor_us is None and new_speed is not None:
            raise ValueError("leaving max speed needs the group's position as restart_anchor_us")
        anchor = current.anchor_us if restart_anchor_us is None else restart_anchor_us
        start = at_us
    else:
        anchor = current.anchor_us + round((at_us - current.start_at_us) * current.speed)
        start = at_us
    return replace(
        current,
        revision=current.revision + 1,
        anchor_us=anchor,
        start_at_us=start,
        speed=new_speed,
        rate=new_rate,
        created_at_us=now_us,
        created_by=author(),
    )


def author() -> str:
    """user@host of whoever runs the command, for `session show`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for the uid (containers)
        user = "?"
    return f"{user}@{socket.gethostname()}"


_codec: Codec | None = None


def codec() -> Codec:
    """The session codec (Avro single-object encoding), made once per process."""
    global _codec
    if _codec is None:
        _codec = Codec(SCHEMA)
    return _codec


def encode(session: Session) -> bytes:
    """The message value for `session`."""
    return codec().encode(session.to_record()).value


def decode(value: bytes | None) -> Session | None:
    """A message value → its session; None for a tombstone. Raises `DecodeError`."""
    if value is None:
        return None
    return Session.from_record(codec().decode_session(value))
