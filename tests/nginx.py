"""Debian's nginx as a real process for the tests: a reverse proxy or a mirror source.

`nginx(http_conf, tmp_path)` starts `/usr/sbin/nginx` in the foreground with a
generated configuration: the caller's `http {}` contents (upstreams and
servers, on loopback ports it chose) wrapped in what an unprivileged,
throw-away instance needs (prefix, pid file, error and access logs and every
temporary folder under `tmp_path`, one worker). It returns once nginx listens
and stops it on exit; a test without nginx on the machine is skipped.
`mirror_site` gives the configuration the docs show and compose runs
(compose/nginx-mirror.conf): nginx in front of an app, mirroring every request
to `trafficmirror record --mirror`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Where Debian installs it; a non-root PATH often lacks /usr/sbin.
_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx")

_MAIN = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log {error_level};
{user}
events {{
    worker_connections 1024;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{http_conf}
}}
"""


def nginx_binary() -> str | None:
    """Path of the nginx binary, or None when it is not installed."""
    found = shutil.which("nginx")
    if found:
        return found
    return next((path for path in _CANDIDATES if os.access(path, os.X_OK)), None)


@dataclass
class Nginx:
    """A running nginx: its prefix folder, logs and process."""

    prefix: Path
    process: subprocess.Popen[bytes]

    @property
    def error_log(self) -> str:
        """nginx's error log so far (the mirror's refused connections show up here)."""
        return _read(self.prefix / "error.log")

    @property
    def access_log(self) -> str:
        return _read(self.prefix / "access.log")

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGTERM), then SIGKILL if it would not stop."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@contextmanager
def nginx(
    http_conf: str, tmp_path: Path, *, error_level: str = "warn", timeout: float = 10.0
) -> Iterator[Nginx]:
    """Run nginx with `http_conf` as the body of its `http {}` block until the block exits.

    Skips the test when nginx is not installed. Raises AssertionError, with
    nginx's error log, when it does not start (a bad directive, a taken port).
    """
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    prefix = tmp_path / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    # As root, nginx's workers would switch to `nobody`, who cannot enter
    # pytest's private tmp folders; an unprivileged nginx ignores `user`.
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        _MAIN.format(prefix=prefix, error_level=error_level, user=user, http_conf=http_conf)
    )
    pid_file = prefix / "nginx.pid"
    stderr = open(prefix / "stderr.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [
            binary,
            "-p",
            str(prefix),
            "-c",
            str(conf),
            "-e",
            str(prefix / "error.log"),
            "-g",
            "daemon off;",
        ],
        stdin=subprocess.DEVNULL,
        stdout=stderr,
        stderr=stderr,
    )
    server = Nginx(prefix, process)
    try:
        # nginx writes its pid file after it opened every listening socket.
        deadline = time.monotonic() + timeout
        while not (pid_file.exists() and pid_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"nginx did not start (exit {process.poll()}):\n"
                    f"{_read(prefix / 'stderr.log')}{server.error_log}"
                )
            time.sleep(0.02)
        yield server
    finally:
        server.stop()
        stderr.close()


#: The mirror configuration the docs show and the compose profile `mirror` runs.
MIRROR_CONF = Path(__file__).resolve().parent.parent / "compose" / "nginx-mirror.conf"


def mirror_site(listen_port: int, app_port: int, recorder_port: int) -> str:
    """An `http {}` body: nginx on `listen_port` proxies to the app and mirrors to the recorder.

    It is compose/nginx-mirror.conf with its compose host names and ports
    replaced by loopback ports, so the tests run the configuration users get:
    the mirror location passes the client's Host and URI on, speaks HTTP/1.1
    with keep-alive to the recorder, and gives up quickly when the recorder
    is slow or away.
    """
    text = MIRROR_CONF.read_text()
    for old, new in (
        ("server app:8080;", f"server 127.0.0.1:{app_port};"),
        ("server mirror-recorder:8081;", f"server 127.0.0.1:{recorder_port};"),
        ("listen 8080;", f"listen 127.0.0.1:{listen_port};"),
    ):
        assert text.count(old) == 1, f"{MIRROR_CONF} should contain {old!r} once"
        text = text.replace(old, new)
    return text


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
