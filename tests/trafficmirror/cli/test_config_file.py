"""`--config FILE` / TRAFFICMIRROR_CONFIG: TOML options; flags and env win; bad files exit 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.replayer.events import make_event, produce_events
from tests.support import Kafka, run_cli
from trafficmirror.cli.main import main

#: The environment without any TRAFFICMIRROR_* setting (and no Kafka from the CI).
ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith("TRAFFICMIRROR_") and k != "KAFKA_BOOTSTRAP_SERVERS"
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trafficmirror.toml"
    path.write_text(text, encoding="utf-8")
    return path


def effective(*args: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """`trafficmirror ... kafka-config`: the librdkafka settings the options add up to."""
    result = run_cli(list(args), env=env or ENV, timeout=30)
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def test_the_file_fills_options_and_flags_and_env_win(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        'bootstrap-servers = "127.0.0.1:9001"\n'
        "[kafka-config]\n"
        'X = ["socket.timeout.ms=1234"]\n'
        'security-protocol = "SASL_SSL"\n'
        'sasl-mechanism = "PLAIN"\n'
        'sasl-username = "from-file"\n',
    )
    secret = dict(ENV, TRAFFICMIRROR_SASL_PASSWORD="from-env")  # secrets: not in the file
    settings = effective("--config", str(config), "kafka-config", env=secret)
    assert settings["bootstrap.servers"] == "127.0.0.1:9001"
    assert settings["socket.timeout.ms"] == "1234"
    assert settings["sasl.username"] == "from-file"
    assert settings["sasl.password"] != "from-env"  # masked, but there
    # The environment wins over the file, a flag over both.
    env = dict(
        secret, TRAFFICMIRROR_CONFIG=str(config), TRAFFICMIRROR_BOOTSTRAP_SERVERS="10.1.1.1:1"
    )
    assert effective("kafka-config", env=env)["bootstrap.servers"] == "10.1.1.1:1"
    flagged = effective("kafka-config", "-b", "127.0.0.2:2", "--sasl-username", "flag", env=env)
    assert (flagged["bootstrap.servers"], flagged["sasl.username"]) == ("127.0.0.2:2", "flag")
    # Without the file, nothing of it.
    assert "socket.timeout.ms" not in effective("kafka-config", "-b", "127.0.0.1:9")


def test_a_subcommand_table_is_its_own(tmp_path: Path) -> None:
    config = write(tmp_path, "[replay.range]\nconcurrency = 7\n[worker]\nconcurrency = 9\n")
    result = run_cli(["--config", str(config), "replay", "range", "--help"], env=ENV)
    assert result.returncode == 0, result.stderr
    concurrency = result.stdout.split("--concurrency", 1)[1].split("--timeout")[0]
    assert "[default: 7;" in " ".join(concurrency.split())


@pytest.mark.e2e
def test_inspect_runs_from_the_file_alone(kafka: Kafka, tmp_path: Path) -> None:
    topic = kafka.new_topic(1)
    produce_events(kafka.bootstrap_servers, topic, [make_event(path=f"/{n}") for n in range(3)])
    config = write(
        tmp_path,
        f'bootstrap-servers = "{kafka.bootstrap_servers}"\ntopic = "{topic}"\n'
        '[inspect]\nformat = "table"\nlimit = 2\nbodies = true\n',
    )
    result = run_cli(["inspect"], env=dict(ENV, TRAFFICMIRROR_CONFIG=str(config)), timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("OFFSET") and lines[-1] == "2 events"
    events = [line for line in lines[1:-1] if line[:1].isdigit()]
    assert [line.split()[-1] for line in events] == ["/0", "/1"]
    assert lines.count("    response body:") == 2  # bodies = true: --bodies


BAD = [
    ("[worker]\ntargt = 'http://x'\n", "[worker] targt is not an option of 'worker'"),
    ("[wroker]\ntarget = 'http://x'\n", "[wroker] is not a command"),
    ("[replay.rnage]\nspeed = '1'\n", "[replay.rnage] is not a command"),
    ("no-such-option = 1\n", "no-such-option is not an option of any command"),
    ("[worker]\nconcurrency = 'lots'\n", "[worker] concurrency: "),
    ("[worker]\nconcurrency = 0\n", "[worker] concurrency: "),
    ("[report]\ncolor = 'sometimes'\n", "[report] color: "),
    ("[worker]\ntarget = ['http://a', 'http://b']\n", "[worker] target takes one value"),
    ("[worker]\ntarget = {url = 'http://a'}\n", "[worker] target is a table"),
    ("[worker\n", "is not valid TOML"),
    ("[inspect]\nno-bodies = true\n", "[inspect] no-bodies is not an option"),  # bodies = false
    ("[replay.range]\nspeed = 'fast'\n", None),  # checked by the command: named at run time
]


#: Cases run as real processes; the others through `main()` in this process (same code, faster).
IN_A_PROCESS = {0, 4, 11}


@pytest.mark.parametrize(
    ("number", "text", "message"),
    [(n, t, m) for n, (t, m) in enumerate(BAD)],
    ids=[m or t for t, m in BAD],
)
def test_a_bad_file_is_one_line_naming_file_and_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    number: int,
    text: str,
    message: str | None,
) -> None:
    config = write(tmp_path, text)
    args = ["--config", str(config), "replay", "range", "-b", "127.0.0.1:9", "-t", "t",
            "--start-offset", "0", "--target", "http://127.0.0.1:9"]  # fmt: skip
    if number in IN_A_PROCESS:
        result = run_cli(args, env=ENV, timeout=30)
        code, stdout, stderr = result.returncode, result.stdout, result.stderr
    else:
        for name in [k for k in os.environ if k not in ENV]:
            monkeypatch.delenv(name)
        with pytest.raises(SystemExit) as exit_:
            main(args)
        code, (stdout, stderr) = exit_.value.code, capsys.readouterr()
    lines = stderr.strip().splitlines()
    assert (code, len(lines)) == (2, 1), stderr
    assert lines[0].startswith(f"trafficmirror: error: {config}"), lines[0]
    if message is None:
        assert lines[0].startswith(f"trafficmirror: error: {config}: [replay.range] speed: ")
    else:
        assert message in lines[0]
    assert "Traceback" not in stderr and stdout == ""


def test_a_missing_file_from_the_environment_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = run_cli(["report"], env=dict(ENV, TRAFFICMIRROR_CONFIG=str(missing)), timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"trafficmirror: error: config file {missing} does not exist (see 'trafficmirror --help')"
    )
