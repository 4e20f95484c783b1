"""Configured strings that may be secrets: `${ENV}` at start, files re-read when they change.

`parse_value` turns what a user wrote into a `Value`: `${NAME}` is the
environment variable (resolved once, at start: a missing one is a one-line
`ConfigError`), `${file:/path}` and a whole value `@/path` are the contents of
a file (checked at start, read when used), `$${` is a literal `${` and a
leading `@@` a literal `@`. `ValueReader.get()` renders a value; a file is
stat-ed at most once a second and read again when its modification time,
size or inode changed, so a rotated Kubernetes Secret (mounted files swapped
atomically) takes effect without a restart. A file that cannot be read later
keeps its last contents (logged once). File contents lose surrounding
whitespace (the newline most files end with).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from replayer.transforming.config import FileRef, Value
from trafficmirror.plumbing.errors import ConfigError

logger = logging.getLogger(__name__)

#: Seconds between two looks at a file's modification time.
RECHECK_SECONDS = 1.0
#: A value file larger than this is refused (a header value or key, not a data file).
MAX_FILE_BYTES = 1024 * 1024

_PLACEHOLDER = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_value(text: str, where: str, environ: Mapping[str, str] | None = None) -> Value:
    """The `Value` of `text`; raises `ConfigError` naming `where` (an option or file:line)."""
    env = os.environ if environ is None else environ
    if text.startswith("@@"):
        text = text[1:]
    elif text.startswith("@"):
        path = text[1:].strip()
        if not path:
            raise ConfigError(f"{where}: '@' must be followed by a file path")
        _check_file(path, where)
        return Value((FileRef(path),))
    parts: list[str | FileRef] = []
    literal: list[str] = []
    at = 0
    for match in _PLACEHOLDER.finditer(text):
        literal.append(text[at : match.start()])
        at = match.end()
        if match.group(0) == "$${":
            literal.append("${")
            continue
        name = match.group(1).strip()
        if name.startswith("file:"):
            path = name[len("file:") :].strip()
            if not path:
                raise ConfigError(f"{where}: ${{file:}} needs a path")
            _check_file(path, where)
            parts.append("".join(literal))
            literal = []
            parts.append(FileRef(path))
            continue
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError(f"{where}: ${{{name}}} is not an environment variable name")
        if name not in env:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        literal.append(env[name])
    literal.append(text[at:])
    parts.append("".join(literal))
    return Value(tuple(part for part in parts if part != ""))


def _check_file(path: str, where: str) -> None:
    try:
        size = os.stat(path).st_size
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    if size > MAX_FILE_BYTES:
        raise ConfigError(f"{where}: {path} has {size} bytes, more than a value may have")


@dataclass
class _FileState:
    checked_at: float = float("-inf")
    signature: tuple[int, int, int] | None = None
    text: str = ""
    warned: bool = False


class ValueReader:
    """Renders one `Value`; cheap when it reads no file, one `stat` a second when it does."""

    def __init__(self, value: Value) -> None:
        self.value = value
        self._static = value.static
        self._files: dict[str, _FileState] = {path: _FileState() for path in value.files}

    def get(self) -> str:
        """The value's text now (files re-read when they changed)."""
        if self._static is not None:
            return self._static
        now = time.monotonic()
        out: list[str] = []
        for part in self.value.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(self._read(part.path, now))
        return "".join(out)

    def _read(self, path: str, now: float) -> str:
        state = self._files[path]
        if now - state.checked_at < RECHECK_SECONDS:
            return state.text
        state.checked_at = now
        try:
            info = os.stat(path)
            signature = (info.st_mtime_ns, info.st_size, info.st_ino)
            if signature != state.signature:
                if info.st_size > MAX_FILE_BYTES:
                    raise OSError(f"{info.st_size} bytes, more than a value may have")
                with open(path, encoding="utf-8") as handle:
                    state.text = handle.read().strip()
                if state.signature is not None:
                    logger.info("re-read %s (it changed)", path)
                state.signature = signature
                state.warned = False
        except (OSError, UnicodeDecodeError) as exc:
            if not state.warned:
                state.warned = True
                logger.warning("cannot read %s (%s); keeping its last contents", path, _reason(exc))
        return state.text


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
