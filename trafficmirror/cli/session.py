"""`trafficmirror session start|set|show|stop`: one replay clock for a group of workers.

A session is a record on TOPIC.control that every worker of a group follows.
These commands take the shared Kafka options of `cli.common` plus --group,
validate speed, rate and times before anything connects, and leave the work
to `replayer.sessions.commands`, imported when a command runs.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from trafficmirror.cli.common import build_settings, kafka_connection_options
from trafficmirror.cli.pace import parse_speed

if TYPE_CHECKING:
    from trafficmirror.plumbing.kafka import KafkaSettings

F = TypeVar("F", bound=Callable[..., Any])

_LEAD_HELP = (
    "Seconds from now until the new settings take effect, the same moment on every "
    "worker (they need the record first; keep clocks in sync with NTP)."
)


def parse_rate(value: str, allow_none: bool = False) -> float | None:
    """Requests per second above 0 (with `allow_none`: `none` removes the limit)."""
    text = value.strip().lower()
    if allow_none and text == "none":
        return None
    try:
        rate = float(text)
    except ValueError:
        extra = " nor 'none'" if allow_none else ""
        raise click.BadParameter(f"{value!r} is not a number{extra}", param_hint="--rate") from None
    if not (math.isfinite(rate) and rate > 0):
        raise click.BadParameter(
            f"{value!r}: the rate must be above 0 requests/s", param_hint="--rate"
        )
    return rate


def parse_moment_us(value: str | None, hint: str) -> int | None:
    """--since/--until → µs since the epoch."""
    if value is None:
        return None
    from replayer.consuming.timespec import parse_time
    from trafficmirror.plumbing.errors import ConfigError

    try:
        moment = parse_time(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None
    return round(moment.timestamp() * 1_000_000)


def _group_option(func: F) -> F:
    return click.option(
        "--group",
        "-g",
        required=True,
        envvar="TRAFFICMIRROR_GROUP",
        help="Consumer group of the workers the session drives (env TRAFFICMIRROR_GROUP).",
    )(func)


def _lead_option(default: float) -> Callable[[F], F]:
    return click.option(
        "--lead",
        type=click.FloatRange(0.1, 60),
        default=default,
        show_default=True,
        help=_LEAD_HELP,
    )


def _common(func: F) -> F:
    """The options every session command takes: Kafka connection, topic, group."""
    return kafka_connection_options(_group_option(func))


def _settings_of(kwargs: dict[str, Any]) -> KafkaSettings:
    """KafkaSettings from the connection options, taken out of a command's kwargs."""
    return build_settings(
        kwargs.pop("bootstrap_servers"),
        kwargs.pop("kafka_properties"),
        kwargs.pop("kafka_config"),
    )


@click.group()
def session() -> None:
    """Replay sessions: one clock, speed and rate for every worker of a group.

    A session is a record on TOPIC.control (compacted, key = the group) that
    every worker of the group follows: a record recorded at time r is due at
    start + (r - anchor) / speed, the same for all of them, and the group's
    --rate is split by the workers' shares of the partitions. Without a
    session, workers replay records as they arrive.
    """


@session.command("start")
@_common
@click.option(
    "--speed",
    default="1",
    show_default=True,
    metavar="X|max",
    help="Time warp: 1 = the recorded pace, 2 = twice as fast, 0.5 = half; "
    "max = as fast as the rate limit and concurrency allow.",
)
@click.option(
    "--rate",
    metavar="R",
    help="Requests/s for the whole group (each worker takes its partitions' "
    "share); no limit when not given.",
)
@click.option(
    "--since",
    metavar="TIME",
    help="Anchor the clock here: what was recorded at TIME is due at the start. "
    "ISO 8601 (local time unless it ends in Z or +02:00), relative (-15m, -2h) "
    "or now. Default: the first record the group has not replayed.",
)
@click.option(
    "--until",
    metavar="TIME",
    help="End of the window, recorded time (same formats); kept in the session.",
)
@_lead_option(2.0)
def start(
    topic: str,
    group: str,
    speed: str,
    rate: str | None,
    since: str | None,
    until: str | None,
    lead: float,
    **kwargs: Any,
) -> None:
    """Start a replay session for GROUP on TOPIC (refused if one is running)."""
    speed_value = parse_speed(speed)
    rate_value = None if rate is None else parse_rate(rate)
    since_us = parse_moment_us(since, "--since")
    until_us = parse_moment_us(until, "--until")
    if since_us is not None and until_us is not None and since_us >= until_us:
        raise click.BadParameter(f"{since!r} is not before --until {until!r}", param_hint="--since")
    settings = _settings_of(kwargs)
    from replayer.sessions import commands as commands

    started = commands.start(
        settings,
        topic,
        group,
        speed=speed_value,
        rate=rate_value,
        since_us=since_us,
        until_us=until_us,
        lead=lead,
    )
    click.echo("started " + "\n".join(commands.describe(started, topic)))


@session.command("set")
@_common
@click.option("--speed", metavar="X|max", help="New time-warp factor (a number above 0, or max).")
@click.option(
    "--rate",
    metavar="R|none",
    help="New requests/s for the whole group; none removes the limit.",
)
@_lead_option(1.0)
def set_(
    topic: str, group: str, speed: str | None, rate: str | None, lead: float, **kwargs: Any
) -> None:
    """Change the speed or rate of GROUP's running session.

    Every worker switches at the same moment (--lead from now) and the clock
    goes on from where it is then: what is due next stays due next.
    """
    from replayer.sessions.session import KEEP, Keep

    if speed is None and rate is None:
        raise click.UsageError("nothing to change: give --speed and/or --rate")
    new_speed: float | None | Keep = KEEP if speed is None else parse_speed(speed)
    new_rate: float | None | Keep = KEEP if rate is None else parse_rate(rate, True)
    settings = _settings_of(kwargs)
    from replayer.sessions import commands as commands

    old, new = commands.change(settings, topic, group, speed=new_speed, rate=new_rate, lead=lead)
    click.echo(
        f"session {new.session_id} revision {new.revision} from "
        f"{_wall(new.start_at_us)}: speed {_speed(old.speed)} -> {_speed(new.speed)}, "
        f"rate {_rate(old.rate)} -> {_rate(new.rate)}"
    )


@session.command("show")
@_common
def show(topic: str, group: str, **kwargs: Any) -> None:
    """Print GROUP's session in effect (or say there is none)."""
    settings = _settings_of(kwargs)
    from replayer.sessions import commands as commands

    current = commands.show(settings, topic, group)
    if current is None:
        click.echo(f"no replay session for group {group!r}: workers replay records as they arrive")
        return
    click.echo("\n".join(commands.describe(current, topic)))


@session.command("stop")
@_common
def stop(topic: str, group: str, **kwargs: Any) -> None:
    """End GROUP's session: workers go back to replaying records as they arrive."""
    settings = _settings_of(kwargs)
    from replayer.sessions import commands as commands

    ended = commands.stop(settings, topic, group)
    if ended is None:
        click.echo(f"no replay session for group {group!r}: nothing to stop")
        return
    click.echo(f"stopped session {ended.session_id} of group {group!r}")


def _wall(us: int) -> str:
    moment = dt.datetime.fromtimestamp(us / 1_000_000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _speed(speed: float | None) -> str:
    return "max" if speed is None else f"{speed:g}x"


def _rate(rate: float | None) -> str:
    return "none" if rate is None else f"{rate:g}/s"
