"""The exception hierarchy of trafficmirror.

Every error the package raises on purpose derives from `TrafficMirrorError`, so
the CLI can catch that one class and print a single line. `UsageError` and its
subclasses mean the user asked for something impossible (exit code 2); anything
else is an operational failure (exit code 1).
"""


class TrafficMirrorError(Exception):
    """Base class of every error trafficmirror raises deliberately."""

    exit_code = 1


class UsageError(TrafficMirrorError):
    """Bad or contradictory input from the user (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A setting is malformed or out of range."""


class TopicNotFound(UsageError):
    """The topic or partition does not exist on the cluster."""


class OffsetOutOfRange(UsageError):
    """A requested offset lies outside the partition's watermarks."""


class KafkaUnavailable(TrafficMirrorError):
    """The cluster could not be reached in time."""


class DecodeError(TrafficMirrorError):
    """A record is not a valid trafficmirror event (bad magic, unknown schema, bad body)."""
