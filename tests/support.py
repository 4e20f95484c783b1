"""Helpers shared by the tests: brokers, topics, real processes, ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from trafficmirror.plumbing.devbroker import MockCluster


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


@dataclass
class Kafka:
    """The broker the tests use: the mock cluster, or a real one from the environment."""

    bootstrap_servers: str
    mock: MockCluster | None = None
    _admin: Any = None

    def create_topic(self, name: str, partitions: int = 4) -> str:
        if self.mock is not None:
            self.mock.create_topic(name, partitions)
            return name
        from confluent_kafka.admin import AdminClient, NewTopic

        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        futures = self._admin.create_topics([NewTopic(name, partitions, 1)])
        futures[name].result(30)
        return name

    def new_topic(self, partitions: int = 4, prefix: str = "tm") -> str:
        """A fresh, uniquely named topic."""
        return self.create_topic(f"{prefix}-{uuid.uuid4().hex[:10]}", partitions)


@dataclass
class Proc:
    """A `trafficmirror` command running as a real process, logs in files."""

    args: list[str]
    log_dir: Path
    name: str
    popen: subprocess.Popen[bytes] = field(init=False)
    _out: IO[bytes] = field(init=False)
    _err: IO[bytes] = field(init=False)

    def start(self, env: dict[str, str] | None = None) -> Proc:
        self._out = open(self.log_dir / f"{self.name}.out", "wb")  # noqa: SIM115
        self._err = open(self.log_dir / f"{self.name}.err", "wb")  # noqa: SIM115
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "trafficmirror", *self.args],
            stdout=self._out,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            env=full_env,
        )
        return self

    @property
    def stdout(self) -> str:
        if not self._out.closed:  # still readable after stop()
            self._out.flush()
        return (self.log_dir / f"{self.name}.out").read_text(errors="replace")

    @property
    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return (self.log_dir / f"{self.name}.err").read_text(errors="replace")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait, then SIGKILL if it would not stop."""
        self.signal(signal.SIGTERM)
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait(5)
        self._out.close()
        self._err.close()
        return code


class Procs:
    """Starts processes for one test and stops whatever is left at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Proc] = []

    def start(self, name: str, args: Sequence[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(list(args), self.log_dir, name).start(env)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            # stop() also closes the log files of a process that already exited.
            proc.stop()

    def dump(self) -> str:
        parts = []
        for proc in self.started:
            parts.append(f"--- {proc.name} {proc.args}\n{proc.stdout}\n{proc.stderr}")
        return "\n".join(parts)


def run_cli(
    args: Sequence[str], timeout: float = 120.0, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run `trafficmirror ARGS` to completion, capturing text output."""
    return subprocess.run(
        [sys.executable, "-m", "trafficmirror", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
        **kwargs,
    )


def self_signed_cert(folder: Path, *, ca: bool = False) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key: (cert.pem, key.pem) in `folder`.

    A TLS server on 127.0.0.1 can serve it and a client trust it as its own
    authority; `ca=True` also marks it a CA (for Kafka's `ssl.ca.location`).
    """
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
    cert = builder.sign(key, hashes.SHA256())
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
