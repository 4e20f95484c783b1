"""Logging set-up shared by every command: one line per event, on stderr."""

from __future__ import annotations

import logging
import sys


def setup(verbose: int = 0, quiet: bool = False) -> None:
    """Configure the root logger once; `-v` shows debug output, `-q` only warnings."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party loggers that are chatty at INFO.
    for name in ("aiohttp.access", "mitmproxy", "asyncio", "passlib", "hpack", "h2"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
