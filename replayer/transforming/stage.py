"""The transforming stage of one replay: routes and a chain of steps per role.

`Transformer` is built once per replay from `TransformOptions` (the hook is
imported then, so a bad module fails at start). `routes` pick each record's
target (`targets.Routes`). The shadow's `Chain` runs, in order: value
correlation, the rewrite rules (file order, then the command line's),
credentials, the hook. With `--baseline` the baseline's requests get a chain of
their own, built the same way but with state of its own (its own tokens, the
IDs the baseline created): the baseline is a second copy of production and
needs the same authentication and rewriting to answer comparably. A rule or
credential with `apply_to: shadow` (or `baseline`) is left out of the other
chain. `prepare()` hands the sender what to run for one record; the pipeline
calls it only when the role has a chain.
"""

from __future__ import annotations

import inspect
import logging

from replayer.models import Target
from replayer.transforming.chain import Chain, Entry, Prepared, entry
from replayer.transforming.config import Role, TransformOptions
from replayer.transforming.correlation import build_correlation
from replayer.transforming.credentials import build_credential
from replayer.transforming.hook import HookFunction, HookStep, load_hook
from replayer.transforming.rules import RuleStep
from replayer.transforming.step import Observer, TransformContext
from replayer.transforming.targets import Routes
from schemas.records import HttpExchange

logger = logging.getLogger(__name__)


class Transformer:
    """Routes and per-role chains of one replay (see the module doc)."""

    def __init__(
        self, options: TransformOptions, default: Target | None, *, baseline: bool = False
    ) -> None:
        self.options = options
        self.routes = Routes(default, options.target_map)
        hook = load_hook(options.hook) if options.hook else None
        self.shadow: Chain | None = None
        self.baseline: Chain | None = None
        if options.enabled:
            self.shadow = self._chain("shadow", hook)
            if baseline:
                self.baseline = self._chain("baseline", hook)

    def _chain(self, role: Role, hook: HookFunction | None) -> Chain | None:
        options = self.options
        entries: list[Entry] = []
        observers: list[Observer] = []
        if options.correlate:
            correlate, observer = build_correlation(options.correlate)
            entries.append(entry(correlate))
            observers.append(observer)
        for rule in options.rules:
            if role in rule.when.roles:
                entries.append(entry(RuleStep(rule), rule.when))
        for credential in options.credentials:
            if role in credential.when.roles:
                entries.append(entry(build_credential(credential), credential.when))
        if hook is not None and options.hook is not None:
            entries.append(entry(HookStep(options.hook, hook)))
        if not entries:
            return None
        return Chain(entries, observers)

    def describe(self) -> str:
        """The steps of the shadow's chain by name, for the start-up log line."""
        if self.shadow is None:
            return "none"
        return ", ".join(step.name for step in self.shadow.steps)

    def prepare(self, chain: Chain, key: bytes | None, event: HttpExchange, role: Role) -> Prepared:
        """What the sender runs for this record's request to `role`."""
        return Prepared(chain, TransformContext(key, event, role=role))

    async def aclose(self) -> None:
        """Close what the steps opened (token clients), once the senders are done."""
        for chain in (self.shadow, self.baseline):
            if chain is None:
                continue
            for step in chain.steps:
                close = getattr(step, "aclose", None)
                if close is None:
                    continue
                try:
                    result = close()
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    logger.warning("closing transform %s failed", step.name, exc_info=True)
