"""How a machine picks its next rule: uniformly among the rules it may run now, with no retried draw.

Hypothesis's own :class:`~hypothesis.stateful.RuleStrategy` draws a rule from the whole table and
*filters* it: the rule must have its preconditions true and be enabled in this example's swarm
(Hypothesis turns a random subset of rules off per example, "swarm testing", so that examples
differ in kind and not only in detail).  When the drawn rule fails the filter the draw is retried,
and an example whose enabled rules all have false preconditions is thrown away as *invalid*.  On
kvspec's machines, whose request rules need a live request and whose misuse rules need something
held, that cost 55–100% of examples at least one retried draw and 2–19% of examples outright.

:class:`EnabledRuleStrategy` keeps both ideas and drops the waste:

1. the rules whose preconditions hold are listed (each precondition is a cheap read of the
   machine's bookkeeping);
2. the swarm's feature flags are asked about those rules only (Hypothesis draws a flag the first
   time a rule is asked about in an example, and remembers it);
3. one integer draw picks among the enabled valid rules -- evenly (see :func:`_even_weights`), so
   a rule entered ``n`` times by :func:`~kvspec.stateful.engine.machine.weight` stays ``n`` times
   as likely;
4. when the swarm has disabled every valid rule, the pick is among all valid rules instead of
   discarding the example.

So every rule draw succeeds at the first try.  :attr:`RuleChoiceCounts` records what happened, for
``kvspec check --stats``.

Shrinking still works by Hypothesis's usual means: the integer shrinks towards the first valid rule
(in Hypothesis's rule order), feature flags towards "enabled", and deleted steps stay deleted.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import attrs
from hypothesis.errors import InvalidDefinition
from hypothesis.stateful import RuleStrategy

__all__ = ["EnabledRuleStrategy", "RuleChoiceCounts"]


@attrs.define
class RuleChoiceCounts:
    """Per machine class: rule draws, and how many fell back because the swarm disabled every valid rule."""

    draws: int = 0
    swarm_fallbacks: int = 0


@lru_cache(maxsize=None)
def _even_weights(n: int) -> dict[int, float]:
    """Weights that make an index below ``n`` (nearly) uniform.

    Hypothesis draws a bounded integer from a distribution that favours small values (good for
    sizes, bad for picking among equals): unweighted, the first rule of the table got 30-45% of
    all steps.  Each index gets ``1/(n+1)`` here; the last ``1/(n+1)`` still follows Hypothesis's
    own distribution.  Shrinking still moves towards index 0.
    """
    return {i: 1 / (n + 1) for i in range(n)}


class EnabledRuleStrategy(RuleStrategy):
    """Draw ``(rule, arguments)`` from the rules with true preconditions that the swarm enabled.

    O(rules) precondition calls per step, one integer draw, then the rule's arguments exactly as
    Hypothesis draws them.
    """

    def __init__(self, machine: Any, counts: RuleChoiceCounts) -> None:
        super().__init__(machine)
        self.counts = counts

    def do_draw(self, data: Any) -> tuple[Any, dict[str, Any]]:
        valid = [rule for rule in self.rules if self.is_valid(rule)]
        if not valid:
            names = ", ".join(rule.function.__name__ for rule in self.rules)
            raise InvalidDefinition(f"No progress can be made from state {self.machine!r}, because no "
                                    f"available rule had a True precondition. rules: {names}")
        flags = data.draw(self.enabled_rules_strategy)
        enabled = [rule for rule in valid if flags.is_enabled(rule.function.__name__)]
        self.counts.draws += 1
        if not enabled:
            self.counts.swarm_fallbacks += 1
            enabled = valid
        n = len(enabled)
        rule = enabled[data.draw_integer(0, n - 1, weights=_even_weights(n))] if n > 1 else enabled[0]
        arguments = {}
        for name, strategy in rule.arguments_strategies.items():
            arguments[name] = data.draw(strategy)
        return rule, arguments
