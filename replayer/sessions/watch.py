"""The worker's side of replay sessions: follow `<topic>.control`, apply it to the scheduler.

`SessionWatcher` reads the group's session record with its own consumer (no
group, assigned to the control topic from the beginning) on a daemon thread:
`load()` reads what is there before the worker takes its first record, so a
session in effect applies from the start; then every new record reaches the
worker within about `fetch.wait.max.ms` (100 ms) plus the poll interval.
`SessionPacer` turns sessions into `Pace` settings of the worker's scheduler,
on the event loop; `SessionFollower` is the two together, as the worker uses
them. The session's rate is the group's; the scheduler takes this worker's
share of it (`Scheduler.set_share`, kept at the worker's share of the partitions).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from confluent_kafka import KafkaException
from prometheus_client import Gauge

from replayer.pacing.clock import Pace
from replayer.sessions.session import Session
from replayer.sessions.store import ControlReader
from trafficmirror.plumbing.errors import KafkaUnavailable
from trafficmirror.plumbing.kafka import KafkaSettings
from trafficmirror.plumbing.logs import Throttle

logger = logging.getLogger(__name__)

REVISION = Gauge(
    "trafficmirror_replayer_session_revision",
    "Revision of the replay session this worker applies (0: none, the worker's own pace).",
)

_POLL_SECONDS = 0.1
#: Seconds between looks for a control topic that does not exist yet (the first
#: `session start` creates it): a new session has --lead (2 s) to reach every worker.
_RETRY_SECONDS = 0.5


class PaceTarget(Protocol):
    """What the pacer needs of a scheduler."""

    @property
    def pace(self) -> Pace: ...

    def set_pace(self, pace: Pace) -> None: ...


def session_pace(session: Session) -> Pace:
    """The scheduler settings of `session` (rate: the group's; max_gap: never, see session)."""
    return Pace(
        speed=session.speed,
        rate=session.rate,
        max_gap=None,
        anchor_us=session.anchor_us,
        start_at=session.start_at_us / 1_000_000,
    )


class SessionPacer:
    """Applies the newest session to `scheduler`; call `update()` on the scheduler's loop.

    * a new session (another session id) applies at once: its clock starts at
      its `start_at`, nothing recorded after its anchor is due before;
    * a revision of the running session (`session set`) applies at its
      `start_at`, the moment every worker switches: before it the old clock
      holds, after it the new one, and the two agree at that moment
      (`replayer.sessions.session.switched`);
    * no session (none yet, or `session stop`) puts back the pace the worker
      was started with (live: records go out as they arrive).

    Revisions of the running session wait for their moment; several may wait
    at once (two quick `session set`s: the second one's clock continues the
    first's, so the first must hold in between). A newer record supersedes the
    waiting revisions due at or after its own moment.
    """

    def __init__(
        self,
        scheduler: PaceTarget,
        loop: asyncio.AbstractEventLoop,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.scheduler = scheduler
        self.base = scheduler.pace  # the worker's own pace, for when no session is in effect
        self.loop = loop
        self.wall = wall
        self.applied: Session | None = None
        self._waiting: list[tuple[Session, asyncio.TimerHandle]] = []

    def update(self, session: Session | None) -> None:
        """Take the newest session (None: there is none); see the class docstring."""
        if session == self.applied or any(session == s for s, _ in self._waiting):
            return
        running = self.applied
        delay = 0.0
        if session is not None and running is not None and session.session_id == running.session_id:
            delay = session.start_at_us / 1_000_000 - self.wall()
        if session is None or delay <= 0:
            self.close()  # nothing waiting may come after what applies now
            self._apply(session)
            return
        keep = []
        for waiting, timer in self._waiting:
            if waiting.start_at_us < session.start_at_us:
                keep.append((waiting, timer))
            else:
                timer.cancel()
        timer = self.loop.call_later(delay, self._due, session)
        self._waiting = [*keep, (session, timer)]
        logger.info(
            "session %s revision %d due at %s (in %.2fs)",
            session.session_id,
            session.revision,
            _clock(session.start_at_us),
            delay,
        )

    def _due(self, session: Session) -> None:
        self._waiting = [(s, t) for s, t in self._waiting if s != session]
        self._apply(session)

    def _apply(self, session: Session | None) -> None:
        previous, self.applied = self.applied, session
        REVISION.set(0 if session is None else session.revision)
        if session is None:
            self.scheduler.set_pace(self.base)
            if previous is not None:
                logger.info(
                    "session %s ended: replaying records as they arrive", previous.session_id
                )
            return
        self.scheduler.set_pace(session_pace(session))
        speed = "max" if session.speed is None else f"{session.speed:g}x"
        rate = "no rate limit" if session.rate is None else f"group rate {session.rate:g}/s"
        logger.info(
            "session %s revision %d: speed %s, %s; recorded %s due at %s",
            session.session_id,
            session.revision,
            speed,
            rate,
            _clock(session.anchor_us),
            _clock(session.start_at_us),
        )

    def close(self) -> None:
        """Cancel the revisions waiting for their moment."""
        for _, timer in self._waiting:
            timer.cancel()
        self._waiting = []


class SessionWatcher:
    """Follows `group`'s session in `<topic>.control` and reports every change.

    `on_change(session_or_None)` runs on the watcher thread; hand it to the
    event loop (`loop.call_soon_threadsafe`).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        group: str,
        on_change: Callable[[Session | None], None] | None = None,
    ) -> None:
        self.reader = ControlReader(settings, topic, group)
        self.on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._throttle = Throttle()

    @property
    def session(self) -> Session | None:
        return self.reader.session

    def load(self, timeout: float = 10.0) -> Session | None:
        """Read the control topic to its end (before `start()`); the session in effect.

        A control topic that does not exist means no session; one that cannot be
        read in time is logged and the worker starts without a session (it
        still applies one as soon as the topic can be read).
        """
        try:
            session = self.reader.read_to_end(timeout)
        except (KafkaUnavailable, KafkaException) as exc:
            logger.warning("cannot read the replay session from %s yet: %s", self.reader.topic, exc)
            return None
        if session is not None:
            logger.info(
                "replay session %s revision %d found in %s",
                session.session_id,
                session.revision,
                self.reader.topic,
            )
        return session

    def start(self, on_change: Callable[[Session | None], None] | None = None) -> None:
        """Follow the topic on a daemon thread from here on."""
        if on_change is not None:
            self.on_change = on_change
        self._thread = threading.Thread(target=self._run, name="trafficmirror-session", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.reader.attach(_RETRY_SECONDS):
                    self._stop.wait(_RETRY_SECONDS)  # no control topic yet: no session
                    continue
                changed = self.reader.poll(_POLL_SECONDS)
            except (KafkaUnavailable, KafkaException) as exc:
                self._log_error(exc)
                self._stop.wait(_RETRY_SECONDS)
                continue
            if changed and self.on_change is not None:
                self.on_change(self.reader.session)

    def _log_error(self, exc: BaseException) -> None:
        if self._throttle.allow():
            logger.warning("replay session (%s): %s", self.reader.topic, exc)

    def close(self) -> None:
        """Stop the thread and close the consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self.reader.close()


def _clock(us: int) -> str:
    moment = dt.datetime.fromtimestamp(us / 1_000_000, dt.UTC)
    return moment.strftime("%H:%M:%S.%f")[:-3] + "Z"


class SessionFollower:
    """A worker's watcher and pacer together: `start()` on the loop, `close()` at the end.

    Besides the pace, a session with `--since` moves the worker: the worker
    asks `take_seek()` on every loop turn and, when it returns a session,
    seeks its partitions to where that session's window starts (and commits
    there, so a partition that changes hands later goes on from the session's
    progress). Only workers that see the session arrive, or find it before its
    start, seek; one that (re)starts during a session continues from the
    group's committed offsets. `on_session` (on the loop) gets every change,
    for the session's time window.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        group: str,
        scheduler: PaceTarget,
        on_session: Callable[[Session | None], None] | None = None,
    ) -> None:
        self.watcher = SessionWatcher(settings, topic, group)
        self.scheduler = scheduler
        self.on_session = on_session
        self.pacer: SessionPacer | None = None
        self.session: Session | None = None
        self._seek: Session | None = None

    async def start(self, loop: asyncio.AbstractEventLoop) -> Session | None:
        """Apply the session in effect (read before any record is taken), then follow it."""
        session = await loop.run_in_executor(None, self.watcher.load)
        self.pacer = SessionPacer(self.scheduler, loop)
        self._update(session, live=False)

        def changed(new: Session | None) -> None:
            loop.call_soon_threadsafe(self._update, new, True)

        self.watcher.start(changed)
        return session

    def _update(self, session: Session | None, live: bool) -> None:
        if self.pacer is None:  # pragma: no cover (start() makes it first)
            raise RuntimeError("session update before start()")
        previous, self.session = self.session, session
        self.pacer.update(session)
        fresh = session is not None and (
            previous is None or previous.session_id != session.session_id
        )
        if session is None or fresh:
            self._seek = None  # a seek the worker has not done yet belongs to an old session
        if session is not None and fresh and session.since_us is not None:
            if live or session.start_at_us / 1e6 > time.time():
                self._seek = session
        if self.on_session is not None and (fresh or (session is None and previous is not None)):
            self.on_session(session)

    def take_seek(self) -> Session | None:
        """The session whose window start the worker must seek to now, once; else None."""
        seek, self._seek = self._seek, None
        return seek

    def close(self) -> None:
        """Stop following (blocks up to a poll interval; call it off the loop)."""
        self.watcher.close()
        if self.pacer is not None:
            self.pacer.close()
