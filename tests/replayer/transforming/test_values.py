"""Configured values: ${ENV} at start, files read when used and re-read when they change."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from replayer.transforming import values
from replayer.transforming.config import FileRef
from replayer.transforming.values import ValueReader, parse_value
from trafficmirror.plumbing.errors import ConfigError


def test_environment_variables_are_resolved_once_at_start() -> None:
    env = {"TOKEN": "s3cret", "USER_ID": "7"}
    value = parse_value("Bearer ${TOKEN} for ${USER_ID}", "--set-header", env)
    assert value.static == "Bearer s3cret for 7"
    env["TOKEN"] = "changed"
    assert ValueReader(value).get() == "Bearer s3cret for 7"


def test_a_value_never_shows_its_text_in_its_repr() -> None:
    value = parse_value("Bearer ${TOKEN}", "x", {"TOKEN": "s3cret"})
    assert "s3cret" not in repr(value)
    assert "s3cret" not in repr((value, [value]))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Bearer ${MISSING_ONE}", "where: environment variable MISSING_ONE is not set"),
        ("${not a name}", "where: ${not a name} is not an environment variable name"),
        ("@", "where: '@' must be followed by a file path"),
        ("@/no/such/file", "where: cannot read /no/such/file: No such file or directory"),
        ("x ${file:}", "where: ${file:} needs a path"),
    ],
)
def test_bad_values_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_value(text, "where", {})
    assert str(caught.value) == message


def test_escapes_give_a_literal_dollar_brace_and_at_sign() -> None:
    assert parse_value("$${HOME} and ${A}", "x", {"A": "a"}).static == "${HOME} and a"
    assert parse_value("@@handle", "x", {}).static == "@handle"
    assert parse_value("", "x", {}).static == ""


def test_a_file_value_is_read_when_used_and_re_read_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "token"
    secret.write_text("first-token\n")
    whole = parse_value(f"@{secret}", "x", {})
    inside = parse_value(f"Bearer ${{file:{secret}}}; v=${{V}}", "x", {"V": "1"})
    assert whole.parts == (FileRef(str(secret)),)
    assert whole.static is None
    reader, prefixed = ValueReader(whole), ValueReader(inside)
    assert reader.get() == "first-token"  # the trailing newline is gone
    assert prefixed.get() == "Bearer first-token; v=1"

    # A rotated Secret: Kubernetes swaps the file; the next look (at most once a second) sees it.
    rotated = tmp_path / "token.new"
    rotated.write_text("second-token")
    os.replace(rotated, secret)
    assert reader.get() == "first-token"  # looked less than a second ago
    monkeypatch.setattr(values, "RECHECK_SECONDS", 0.0)
    caplog.set_level(logging.INFO, logger="replayer.transforming.values")
    assert reader.get() == "second-token"
    assert prefixed.get() == "Bearer second-token; v=1"
    assert "re-read" in caplog.text and "second-token" not in caplog.text

    # Gone for a moment: the last contents stay, and that is logged once.
    secret.unlink()
    assert reader.get() == "second-token"
    assert reader.get() == "second-token"
    assert caplog.text.count("keeping its last contents") == 1


def test_a_file_too_large_for_a_value_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (values.MAX_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="more than a value may have"):
        parse_value(f"@{big}", "x", {})
