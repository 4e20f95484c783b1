"""Debian's nginx for the live-path benchmark: the app, the reverse proxy, the mirroring proxy.

Each instance runs in the foreground (`nginx -p DIR -c FILE -g 'daemon off;'`)
with a generated config in a temp prefix, one worker process (running as the
user that started nginx), no access log, its temp paths and pid file inside
the prefix (Debian's build points them at /var/lib/nginx otherwise). Keep-alive
limits are raised so no connection is closed during a run (nginx closes one
after 1,000 requests by default). The
proxies keep connections to their upstream alive (`keepalive 16`, HTTP/1.1,
`Connection: ""`) and pass the client's Host on, as `record` does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from procs import start, wait_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
#: The app's answer to every steady request (a small JSON body).
HELLO = '{"hello": "from the live-path app", "items": [1, 2, 3]}\n'
#: Where the app serves the big download.
BIG_PATH = "/big"

_COMMON = """\
{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
{body}
}}
"""

_APP = """\
    server {{
        listen 127.0.0.1:{port};
        location = /hello {{
            default_type application/json;
            return 200 '{hello}';
        }}
        location = {big_path} {{
            default_type application/octet-stream;
            alias {big_file};
        }}
    }}
"""

_STUB = """\
    server {{
        listen 127.0.0.1:{port};
        location / {{
            return 200;
        }}
    }}
"""

_UPSTREAM = """\
    upstream {name} {{
        server 127.0.0.1:{port};
        keepalive 16;
        keepalive_requests 100000000;
    }}
"""

_PROXY_SETTINGS = """\
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
"""

_PROXY = """\
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
{settings}{mirror}
        }}{mirror_location}
    }}
"""

_MIRROR_LOCATION = """
        location = /__mirror {{
            internal;
            proxy_pass http://recorder$request_uri;
{settings}
        }}"""


def _user() -> str:
    # Started as root, nginx runs its worker as `nobody`, which cannot read a
    # private temp folder: keep the worker as the user that started it.
    return "user root;\n" if os.geteuid() == 0 else ""


def app_config(prefix: Path, port: int, big_file: Path) -> str:
    """The app: `GET /hello` answers `HELLO`, `GET /big` serves `big_file`."""
    body = _APP.format(port=port, hello=HELLO.rstrip("\n"), big_path=BIG_PATH, big_file=big_file)
    return _COMMON.format(prefix=prefix, body=body, user=_user())


def stub_config(prefix: Path, port: int) -> str:
    """A mirror target that answers at once, empty: what nginx's `mirror` costs by itself."""
    return _COMMON.format(prefix=prefix, body=_STUB.format(port=port), user=_user())


def proxy_config(prefix: Path, port: int, app_port: int, mirror_port: int | None = None) -> str:
    """A reverse proxy to the app; with `mirror_port`, each request also mirrored there."""
    body = _UPSTREAM.format(name="app", port=app_port)
    mirror = mirror_location = ""
    if mirror_port is not None:
        body += _UPSTREAM.format(name="recorder", port=mirror_port)
        mirror = "            mirror /__mirror;"
        mirror_location = _MIRROR_LOCATION.format(settings=_PROXY_SETTINGS.rstrip("\n"))
    body += _PROXY.format(
        port=port, settings=_PROXY_SETTINGS, mirror=mirror, mirror_location=mirror_location
    )
    return _COMMON.format(prefix=prefix, body=body, user=_user())


def start_nginx(prefix: Path, config: str, port: int) -> subprocess.Popen[bytes]:
    """Write `config` into `prefix` and run nginx on it until stopped; waits for `port`."""
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(config)
    proc = start(
        [NGINX, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        None,
        prefix / "stderr.log",
    )
    try:
        wait_port(port, timeout=10)
    except TimeoutError:
        proc.kill()
        log = (
            (prefix / "error.log").read_text(errors="replace")
            if (prefix / "error.log").exists()
            else ""
        )
        raise RuntimeError(f"nginx did not start on {port}: {log.strip()[-500:]}") from None
    return proc
