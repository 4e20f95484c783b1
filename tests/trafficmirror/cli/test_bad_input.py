"""Bad input to every command: one line on stderr, exit code 2, no traceback.

The cases are generated from the click tree, so a new command or option is
walked through without editing this file:

* every command (and group): an unknown option;
* every required option left out (the others given valid values);
* every option that takes a value, given none, and every option whose type
  can be wrong (numbers, ranges, choices), a wrong value: click itself
  answers these, the same way for every command, so an option shared by
  several commands (the Kafka options, ...) is tried with the first of them;
* a wrong value for every option in `BAD_VALUES` (URLs, listen addresses,
  offsets, times, paths, rules ...), with every command that has it: the
  commands check these themselves;
* hand-written contradictions (`CONTRADICTIONS`).

Each case is a real `python -m trafficmirror` process with an environment
cleaned of TRAFFICMIRROR_* and KAFKA_BOOTSTRAP_SERVERS; nothing it is given
points at a reachable service, so a case that were wrongly accepted would fail
(or time out) rather than pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from tests.support import run_cli
from trafficmirror.cli.main import cli

#: A valid value for every option a command may require.
VALID = {
    "--topic": "t",
    "--upstream": "http://127.0.0.1:9",
    "--target": "http://127.0.0.1:9",
    "--group": "g",
    "--start-offset": "0",
    "--bootstrap-servers": "127.0.0.1:9",
    "--output": "out.har",
}

#: A valid file for `import` (its FILE argument), so a wrongly accepted option gets as far as Kafka.
HAR_FILE = str(Path(__file__).parents[2] / "interchange" / "data" / "one.har")

#: Options a command needs although none of them is required on its own
#: (`replay range` takes offsets or a time window; a replay --target or --target-map).
NEEDED = {
    "range": ["--start-offset", "0", "--target", "http://127.0.0.1:9"],
    "worker": ["--target", "http://127.0.0.1:9"],
    "import": ["--format", "har", HAR_FILE],
}

#: Wrong values for options whose type alone does not say what is wrong.
BAD_VALUES: dict[str, list[str]] = {
    "--bootstrap-servers": [""],
    "--upstream": ["ftp://example.com", "http://", "http://host:99999"],
    "--target": ["example.com:8080", "http://host:notaport"],
    "--baseline": ["not a url"],
    "--listen": ["127.0.0.1:notaport", "127.0.0.1:70000"],
    "--end-offset": ["soon", "-3"],
    "--since": ["yesterday-ish"],
    "--until": ["31/12/2024"],
    "--start-from": ["latests", "yesterday-ish"],
    "--html": ["/nonexistent-folder/report.html"],
    "-X": ["no-equals-sign", "no.such.librdkafka.property=1"],
    "--kafka-config": ["/nonexistent/client.properties"],
    "--redact-header": ["Authorization=scramble", "bad header name"],
    "--redact-json": ["password", "$.a[x]", "$.card=hmac"],
    "--redact-param": ["token=scramble", "=mask", "a&b", "token=jwt-claims", "token=hmac"],
    "--redact-key-file": ["/nonexistent/key"],
    "--tls-cert": ["/nonexistent/cert.pem", "=cert.pem"],
    "--rules": ["/nonexistent/rules.toml"],
    "--proto-descriptor-set": ["/nonexistent/users.pb", "/etc/hostname"],
    "--proto-reflection": ["ftp://example.com", "http://host:99999"],
    "--ignore-path": ["password", "$.a["],
    "--unordered": ["tags"],
    "--replace": ["no-arrow", "(unclosed=>x"],
    "--tolerance": ["close", "-1"],
    "--route": ["GET articles", "/a/{b"],
    "--ssl-ca-location": ["/nonexistent/ca.pem"],
    "--topic": [""],
    "--speed": ["0", "-2", "fast", "inf"],
    "--max-response-bytes": ["0", "4MiB", "-1"],
    "--give-up-after": ["-1", "soon", "nan"],
    "--rate": ["0", "lots", "nan"],
    "--filter": ["~m", "~nosuch x", "(~u /api", ""],
    "--methods": ["", "GET,ALL", "G E T", "GET;POST"],
    "--transforms": ["/nonexistent/transforms.yaml"],
    "--set-header": ["no-colon", "Host: x", "X-Token: ${TRAFFICMIRROR_UNSET_IN_TESTS}"],
    "--remove-header": ["Content-Length", "bad name"],
    "--target-map": ["no-equals-sign", "shop=ftp://x", "shop=http://x/path"],
    "--transform-module": ["no_such_module_anywhere:f", "no-colon"],
    "--amplify": ["0.5", "0", "101", "nan", "inf"],
    "--fail-on": [
        "mismatch_rate<1%",
        "latency>3",
        "mismatch_rate>5",
        "error_rate>101%",
        "p99_ratio[]>1",
        "p99_ratio>1.3%",
        "p0_ms>1",
    ],
    "--junit": ["/nonexistent-folder/report.xml"],
    "--output": ["/nonexistent-folder/traffic.har", "traffic.unknown"],
    "--client-header": ["bad header", ""],
    "--client-key-file": ["/nonexistent/key"],
    "--signatures": ["sqli", "", "none,xss"],
    "--threshold": ["rate-factor", "speed=3", "hammer-share=0", "max-keys=many"],
}

#: (command path, arguments) that are each valid alone but not together.
CONTRADICTIONS: list[tuple[str, list[str]]] = [
    ("replay range", ["--start-offset", "5", "--end-offset", "2"]),
    ("inspect", ["--start-offset", "5", "--end-offset", "2"]),
    ("report", ["--since", "now", "--until", "-1h"]),
    ("session start", ["--since", "now", "--until", "-1h"]),
    ("session set", []),  # nothing to change
    ("replay range", ["--since", "-1h", "--until", "-2h"]),
    ("inspect", ["--since", "-1h", "--start-offset", "3"]),
    ("kafka-config", ["--sasl-mechanism", "PLAIN"]),
    ("kafka-config", ["--security-protocol", "SASL_SSL", "--sasl-mechanism", "PLAIN"]),
    ("kafka-config", ["--sasl-username", "u", "--security-protocol", "SASL_SSL",
                      "--sasl-mechanism", "PLAIN", "--sasl-password", "p",
                      "-X", "sasl.username=v"]),
    ("kafka-config", ["--security-protocol", "PLAINTEXT", "--ssl-ca-location", "/etc/hostname"]),
    ("record", ["--redact-header", "Cookie=hmac"]),  # hmac without a key
    # A Kafka message size that cannot hold two bodies at the cap.
    ("record", ["-X", "message.max.bytes=1000000"]),
    ("record", ["--max-body-bytes", "600000000"]),
    ("record", ["--listen", "127.0.0.1:18555", "--metrics-port", "18555"]),
    ("record", ["--listen", "0.0.0.0:18556", "--upstream", "http://localhost:18556"]),
    ("record", ["--listen", "127.0.0.1:80", "--upstream", "http://127.0.0.1/app"]),
    ("worker", ["--baseline-concurrency", "4"]),  # a baseline's cap without a baseline
    ("replay range", ["--baseline-timeout", "2"]),
    ("worker", ["--proto-descriptor-set", "users.pb", "--proto-reflection", "http://127.0.0.1:9"]),
    ("export", ["--start-offset", "5", "--end-offset", "2"]),
    ("export", ["--since", "-1h", "--start-offset", "3"]),
    ("import", ["--no-redaction", "--redact-header", "X-Secret"]),
    ("import", ["/etc/hostname"]),  # not JSON: a malformed file
    ("import", ["--format", "gor", HAR_FILE]),  # a HAR is not a .gor file
]  # fmt: skip


def commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


def options(command: click.Command) -> list[click.Option]:
    return [
        p
        for p in command.params
        if isinstance(p, click.Option) and not p.hidden and p.name not in ("help",)
    ]


def flag(option: click.Option) -> str:
    longs = [o for o in option.opts if o.startswith("--")]
    return longs[0] if longs else option.opts[0]


def base_args(command: click.Command, leave_out: str | None = None) -> list[str]:
    args: list[str] = []
    for option in options(command):
        name = flag(option)
        if option.required and name != leave_out:
            if name not in VALID:
                raise AssertionError(f"add a valid value for required option {name} to VALID")
            args += [name, VALID[name]]
    if leave_out is None:
        args += NEEDED.get(command.name or "", [])
    if leave_out != "--bootstrap-servers" and "--bootstrap-servers" in map(flag, options(command)):
        args += ["--bootstrap-servers", VALID["--bootstrap-servers"]]
    return args


def typed_bad_values(option: click.Option) -> list[str]:
    kind = option.type
    if isinstance(kind, click.Choice):
        return ["no-such-choice"]
    if isinstance(kind, click.IntRange | click.FloatRange):
        bad = ["x"]
        if kind.min is not None:
            bad.append(str(kind.min - 1))
        if kind.max is not None:
            bad.append(str(kind.max + 1))
        return bad
    if isinstance(kind, click.types.IntParamType | click.types.FloatParamType):
        return ["x"]
    return []


def cases() -> Iterator[object]:
    yield pytest.param([], id="no-command")
    yield pytest.param(["no-such-command"], id="unknown-command")
    yield pytest.param(["--no-such-option"], id="unknown-global-option")
    # The group's --config (bad contents: tests/trafficmirror/cli/test_config_file.py).
    yield pytest.param(["--config"], id="--config without a value")
    yield pytest.param(
        ["--config", "/nonexistent/trafficmirror.toml", "worker"], id="--config missing"
    )
    yield pytest.param(["--config", "/etc/hostname", "report"], id="--config not TOML")
    yield pytest.param(["--config", "/", "report"], id="--config a folder")
    parsed_by_click: set[tuple[str, str]] = set()  # (option, case) tried once
    for path, command in commands(cli):
        words = list(path)
        label = " ".join(path)
        yield pytest.param([*words, "--no-such-option"], id=f"{label}: unknown option")
        if isinstance(command, click.Group):
            yield pytest.param(words, id=f"{label}: no subcommand")
            continue
        for option in options(command):
            name = flag(option)
            if option.required:
                yield pytest.param(
                    [*words, *base_args(command, leave_out=name)], id=f"{label}: without {name}"
                )
            if not option.is_flag and (name, "") not in parsed_by_click:
                parsed_by_click.add((name, ""))
                yield pytest.param(
                    [*words, *base_args(command), name], id=f"{label}: {name} without a value"
                )
            typed = [v for v in typed_bad_values(option) if (name, v) not in parsed_by_click]
            parsed_by_click.update((name, v) for v in typed)
            for value in typed + BAD_VALUES.get(name, []):
                args = [a for a in base_args(command) if a]
                if name in args:  # replace the valid value given for a required option
                    index = args.index(name)
                    del args[index : index + 2]
                yield pytest.param([*words, *args, name, value], id=f"{label}: {name} {value!r}")
    yield pytest.param(
        ["replay", "range", "-b", "127.0.0.1:9", "-t", "t", "--target", "http://127.0.0.1:9"],
        id="replay range: neither offsets nor a window",
    )
    for words in (["replay", "range", "--start-offset", "0"], ["worker", "--group", "g"]):
        yield pytest.param(
            [*words, "-b", "127.0.0.1:9", "-t", "t"],
            id=f"{' '.join(words[:2])}: neither --target nor --target-map",
        )
    for label, args in CONTRADICTIONS:
        path = tuple(label.split())
        command = dict(commands(cli))[path]
        yield pytest.param([*path, *base_args(command), *args], id=f"{label}: {' '.join(args)}")


ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith("TRAFFICMIRROR_") and k != "KAFKA_BOOTSTRAP_SERVERS"
}


@pytest.mark.parametrize("args", list(cases()))
def test_bad_input_is_one_line_and_exit_2(args: list[str]) -> None:
    result = run_cli(args, timeout=30, env=ENV)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("trafficmirror: error: "), lines
    assert len(lines[0]) < 400, lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
