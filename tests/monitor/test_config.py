"""Thresholds: defaults, the rules file, and one-line errors for bad values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from monitor.config import Thresholds, apply_items, load_rules
from trafficmirror.plumbing.errors import ConfigError


def test_rules_file_sets_thresholds_with_dashes_or_underscores(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rate-factor: 20\nwarmup_seconds: 5\nsignatures: [xss, scanner]\n")
    limits = load_rules(str(rules))
    assert limits.rate_factor == 20.0 and limits.warmup_seconds == 5.0
    assert limits.signatures == ("xss", "scanner")
    assert limits.window_seconds == Thresholds().window_seconds
    assert limits.with_overrides({"rate_factor": 3.0, "window_seconds": None}).rate_factor == 3.0


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("rate-factr: 2\n", "unknown threshold 'rate-factr'"),
        ("rate-factor: lots\n", "rate-factor must be a number"),
        ("rate-min-requests: 2.5\n", "must be a whole number"),
        ("hammer-share: 2\n", "hammer-share must be in (0, 1]"),
        ("signatures: [sqli]\n", "unknown signature detector 'sqli'"),
        ("- a\n- b\n", "expected a mapping"),
        ("a: [\n", "not valid YAML"),
        ("window-seconds: 0.5\n", "window-seconds must be at least 1"),
    ],
)
def test_bad_rules_are_one_line_config_errors(tmp_path: Path, text: str, error: str) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_rules(str(rules))
    assert error in str(info.value) and "\n" not in str(info.value)


def test_threshold_items_override_the_rules() -> None:
    base = Thresholds(rate_factor=20.0)
    limits = apply_items(["rate-factor=5", "max_keys=1000", "signatures=[xss]"], base)
    assert (limits.rate_factor, limits.max_keys, limits.signatures) == (5.0, 1000, ("xss",))


@pytest.mark.parametrize(
    ("item", "error"),
    [
        ("rate-factor", "expected NAME=VALUE"),
        ("speed=3", "unknown threshold 'speed'"),
        ("max-keys=many", "max-keys must be a whole number"),
        ("rate-factor=0", "rate-factor must be above 0"),
    ],
)
def test_bad_threshold_items(item: str, error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        apply_items([item], Thresholds())
