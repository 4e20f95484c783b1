"""The report's CI gate: check the budgets, print the exceeded ones, write JUnit.

`BudgetCheck` is what `report --fail-on EXPR [--junit FILE]` runs once the
aggregate is built: it measures each budget (`results.budgets`), prints one
line per exceeded budget and scope (and one for a budget with nothing to
measure), writes the JUnit XML (`results.junit`) when asked, and says the
report's exit code. It sits above both, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from replayer.results.aggregate import Aggregate
from replayer.results.budgets import Budget, check
from replayer.results.junit import render_junit
from trafficmirror.plumbing.errors import ConfigError


@dataclass(frozen=True)
class BudgetCheck:
    """The report's gate: check `budgets`, print, write JUnit to `junit_path` if given."""

    budgets: tuple[Budget, ...]
    junit_path: str | None = None
    suite: str = "trafficmirror report"

    def __call__(self, aggregate: Aggregate, out: TextIO) -> int:
        """1 when a budget is exceeded, else 0; one line per exceeded budget and scope."""
        verdicts = check(aggregate, self.budgets)
        exceeded = [v for v in verdicts if v.exceeded]
        for verdict in verdicts:
            if verdict.exceeded or verdict.value is None:
                print(verdict.line(), file=out)
        if self.budgets and not exceeded:
            print(f"budgets kept: {', '.join(b.text for b in self.budgets)}", file=out)
        if self.junit_path is not None:
            xml = render_junit(aggregate, verdicts, suite=self.suite)
            try:
                Path(self.junit_path).write_bytes(xml)
            except OSError as exc:
                raise ConfigError(f"cannot write {self.junit_path}: {exc.strerror}") from None
            print(f"JUnit report written to {self.junit_path}", file=out)
        return 1 if exceeded else 0
