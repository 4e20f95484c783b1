"""Kafka security: TLS and SASL settings from flags, environment and files; secrets never shown.

librdkafka's mock cluster speaks neither SASL (SaslHandshake is unsupported)
nor TLS, so authentication cannot succeed end to end here. What is tested
instead: the settings built from every source, librdkafka accepting them (a
client is created), a real process configured for SASL or TLS against the mock
failing at once with one clear line that never holds the password, the
recorder keeping live traffic going meanwhile, and, only when a real cluster's
address and credentials are in the environment, recording and reading back
through it.
"""

from __future__ import annotations

import http.client
import os
from pathlib import Path

import pytest

from tests.support import Kafka, Procs, free_port, run_cli, self_signed_cert, wait_port
from trafficmirror.demo.apps import SampleApp
from trafficmirror.plumbing.errors import ConfigError
from trafficmirror.plumbing.kafka import KafkaSettings, effective_config, mask
from trafficmirror.plumbing.security import check_security

PASSWORD = "pw-Zq81-never-printed"
CLIENT_SECRET = "oidc-secret-Xy77-never-printed"
SASL = ["--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-512"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAFFICMIRROR_")}
    env.update(extra)
    return env


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"security.protocol": "SASL_TLS"}, "unknown security.protocol"),
        ({"security.protocol": "SASL_SSL", "sasl.mechanism": "KERBEROS5"}, "unknown SASL"),
        ({"sasl.mechanism": "PLAIN"}, "needs security protocol SASL_SSL"),
        ({"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}, "missing: sasl.username"),
        (
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-256",
                "sasl.username": "u",
            },
            "missing: sasl.password",
        ),
        ({"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER"}, "token endpoint"),
        (
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "OAUTHBEARER",
                "sasl.oauthbearer.method": "oidc",
                "sasl.oauthbearer.token.endpoint.url": "https://idp.example/token",
            },
            "missing sasl.oauthbearer.client.id",
        ),
        ({"ssl.ca.location": "/etc/hostname"}, "does not use TLS"),
        ({"security.protocol": "SSL", "ssl.ca.location": "/nonexistent.pem"}, "no such file"),
    ],
)
def test_contradictory_or_incomplete_security_is_refused(
    props: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        check_security(props)


def test_every_mechanism_and_tls_is_accepted_by_librdkafka(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path, ca=True)
    cases = {
        "PLAIN": ["sasl.username=u", f"sasl.password={PASSWORD}"],
        "SCRAM-SHA-256": ["sasl.username=u", f"sasl.password={PASSWORD}"],
        "SCRAM-SHA-512": ["sasl.username=u", f"sasl.password={PASSWORD}"],
        "OAUTHBEARER": [
            "sasl.oauthbearer.method=oidc",
            "sasl.oauthbearer.token.endpoint.url=https://idp.example/token",
            "sasl.oauthbearer.client.id=recorder",
            f"sasl.oauthbearer.client.secret={CLIENT_SECRET}",
        ],
    }
    tls = [f"ssl.ca.location={cert}", f"ssl.certificate.location={cert}", f"ssl.key.location={key}"]
    for mechanism, props in cases.items():
        settings = KafkaSettings.from_options(
            "127.0.0.1:1",
            ["security.protocol=SASL_SSL", f"sasl.mechanism={mechanism}", *props, *tls],
        )
        for client in ("producer", "consumer", "admin"):
            lines = effective_config(settings, client)
            text = "\n".join(lines)
            assert f"sasl.mechanism={mechanism}" in text
            assert PASSWORD not in text and CLIENT_SECRET not in text
            if mechanism == "OAUTHBEARER":
                assert "sasl.oauthbearer.client.secret=***" in lines
                assert "sasl.oauthbearer.token.endpoint.url=https://idp.example/token" in lines
            else:
                assert "sasl.password=***" in lines and "sasl.username=u" in lines
    # librdkafka itself checks what it is given: an unreadable key is refused.
    (tmp_path / "bad.key").write_text("not a key")
    bad = KafkaSettings.from_options(
        "127.0.0.1:1",
        [
            "security.protocol=SSL",
            f"ssl.certificate.location={cert}",
            f"ssl.key.location={tmp_path / 'bad.key'}",
        ],
    )
    with pytest.raises(ConfigError, match="librdkafka refuses"):
        effective_config(bad, "producer")


def test_kafka_config_command_merges_file_flags_env_and_x(tmp_path: Path) -> None:
    cert, _ = self_signed_cert(tmp_path, ca=True)
    props = tmp_path / "client.properties"
    props.write_text(
        f"security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nssl.ca.location={cert}\nlinger.ms=1\n"
    )
    result = run_cli(
        [
            "kafka-config",
            "-b",
            "127.0.0.1:1",
            "--kafka-config",
            str(props),
            "--sasl-mechanism",
            "scram-sha-256",
            "--sasl-username",
            "bob",
            "-X",
            "linger.ms=9",
            "--client",
            "producer",
        ],
        env=clean_env(TRAFFICMIRROR_SASL_PASSWORD=PASSWORD),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for expected in (
        "security.protocol=SASL_SSL",  # from the file
        "sasl.mechanism=SCRAM-SHA-256",  # the flag wins over the file
        "sasl.username=bob",
        "sasl.password=***",  # from the environment, masked
        "linger.ms=9",  # -X wins over the file
        f"ssl.ca.location={cert}",
        "enable.idempotence=True",
    ):
        assert expected in lines, (expected, lines)
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sasl-mechanism", "PLAIN"], "needs security protocol"),
        ([*SASL, "--sasl-username", "u"], "missing: sasl.password"),
        (
            [
                "--security-protocol",
                "SASL_SSL",
                "--sasl-mechanism",
                "PLAIN",
                "--sasl-username",
                "u",
                "--sasl-password",
                PASSWORD,
                "-X",
                "sasl.username=v",
            ],
            "contradicts --sasl-username",
        ),
        (
            ["--security-protocol", "SSL", "--ssl-ca-location", "/nonexistent/ca.pem"],
            "no such file",
        ),
        (
            [
                "--security-protocol",
                "SASL_SSL",
                "--sasl-mechanism",
                "PLAIN",
                "--sasl-oauthbearer-token-endpoint-url",
                "https://idp/token",
            ],
            "is for OAUTHBEARER",
        ),
        (["--security-protocol", "TLS"], "--security-protocol"),
    ],
)
def test_bad_security_flags_are_one_line(args: list[str], message: str) -> None:
    result = run_cli(["kafka-config", "-b", "127.0.0.1:1", *args], env=clean_env())
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert PASSWORD not in result.stderr


@pytest.mark.parametrize(
    "security",
    [[*SASL, "--sasl-username", "u"], ["--security-protocol", "SSL"]],
    ids=["sasl", "tls"],
)
def test_a_secured_client_against_the_mock_fails_at_once_with_one_line(
    mock_kafka: Kafka, security: list[str]
) -> None:
    topic = mock_kafka.new_topic(1)
    result = run_cli(
        ["-v", "inspect", "-b", mock_kafka.bootstrap_servers, "-t", topic, *security],
        env=clean_env(TRAFFICMIRROR_SASL_PASSWORD=PASSWORD),
        timeout=30,
    )
    assert result.returncode == 1
    errors = [
        line
        for line in result.stderr.splitlines()
        if " WARNING " in line or " ERROR " in line or line.startswith("trafficmirror: error")
    ]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"trafficmirror: error: Kafka at {mock_kafka.bootstrap_servers} refused")
    assert ("SASL" in last) if "--sasl-username" in security else ("SSL handshake failed" in last)
    assert errors == [last]  # -v shows debug lines, yet the failure is said once
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert "sasl.password=***" in result.stderr or "--sasl-username" not in security


def test_recorder_with_sasl_against_the_mock_keeps_live_traffic_and_says_why(
    mock_kafka: Kafka, procs: Procs
) -> None:
    port = free_port()
    with SampleApp() as app:
        recorder = procs.start(
            "recorder",
            [
                "-v",
                "record",
                "-b",
                mock_kafka.bootstrap_servers,
                "-t",
                "traffic",
                *SASL,
                "--sasl-username",
                "u",
                "--upstream",
                app.url,
                "--listen",
                f"127.0.0.1:{port}",
                "--flush-timeout",
                "0.5",
            ],
            env=clean_env(TRAFFICMIRROR_SASL_PASSWORD=PASSWORD),
        )
        wait_port(port, timeout=15)
        statuses = []
        for i in range(5):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", f"/ok/{i}")
            statuses.append(conn.getresponse().status)
            conn.close()
        assert statuses == [200] * 5
        assert recorder.stop() == 0
    stderr = recorder.stderr
    assert "SASL" in stderr and "WARNING" in stderr
    assert "recorded=0 dropped=5 failed=0" in stderr
    assert PASSWORD not in stderr + recorder.stdout
    assert "Traceback" not in stderr


REAL = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("TRAFFICMIRROR_SASL_PASSWORD")


@pytest.mark.skipif(
    not REAL,
    reason="needs a real secured cluster: KAFKA_BOOTSTRAP_SERVERS plus "
    "TRAFFICMIRROR_SECURITY_PROTOCOL, TRAFFICMIRROR_SASL_MECHANISM, "
    "TRAFFICMIRROR_SASL_USERNAME and TRAFFICMIRROR_SASL_PASSWORD "
    "(the mock cluster has no SASL or TLS)",
)
def test_record_and_read_back_through_a_real_secured_cluster(procs: Procs) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    servers = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    env = {k: v for k, v in os.environ.items() if k.startswith("TRAFFICMIRROR_")}
    flags = {
        "security.protocol": env.get("TRAFFICMIRROR_SECURITY_PROTOCOL", "SASL_SSL"),
        "sasl.mechanism": env.get("TRAFFICMIRROR_SASL_MECHANISM", "SCRAM-SHA-512"),
        "sasl.username": env.get("TRAFFICMIRROR_SASL_USERNAME", ""),
        "sasl.password": env["TRAFFICMIRROR_SASL_PASSWORD"],
    }
    if env.get("TRAFFICMIRROR_SSL_CA_LOCATION"):
        flags["ssl.ca.location"] = env["TRAFFICMIRROR_SSL_CA_LOCATION"]
    settings = KafkaSettings.from_options(servers, [f"{k}={v}" for k, v in flags.items()])
    topic = f"tm-secure-{os.getpid()}"
    AdminClient(settings.admin_config()).create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    port = free_port()
    with SampleApp() as app:
        recorder = procs.start(
            "recorder",
            [
                "record",
                "-b",
                servers,
                "-t",
                topic,
                "--upstream",
                app.url,
                "--listen",
                f"127.0.0.1:{port}",
            ],
        )
        wait_port(port, timeout=15)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/secure")
        assert conn.getresponse().status == 200
        conn.close()
        assert recorder.stop() == 0
    assert "recorded=1 dropped=0 failed=0" in recorder.stderr
    result = run_cli(["inspect", "-b", servers, "-t", topic])
    assert result.returncode == 0 and '"/secure"' in result.stdout, result.stderr
    wrong = run_cli(
        ["inspect", "-b", servers, "-t", topic],
        env={**os.environ, "TRAFFICMIRROR_SASL_PASSWORD": PASSWORD},
    )
    assert wrong.returncode == 1 and "refused" in wrong.stderr
    assert PASSWORD not in wrong.stderr and flags["sasl.password"] not in recorder.stderr
    assert mask(flags)["sasl.password"] == "***"
