"""Quality: every self-test mutant is caught by the machines it names, under the ``ci`` profile.

A machine that cannot catch a planted bug proves nothing; these tests keep the machines honest.

A mutant names every machine of its family that checks the rule it breaks, and at least one must
catch it.  One machine alone is not enough: under the derandomized ``ci`` profile the examples
Hypothesis draws also depend on the constants it collects from the modules loaded in the process
(so on which tests ran before in the same pytest worker); a mutant caught by one machine at the
edge of the budget can slip through in another process.  Family-wide detection keeps the margin.
"""

import pytest

from kvspec.stateful.engine.registry import find_machines
from kvspec.stateful.runner import check_machine
from kvspec.stateful.mutants import MUTANTS, drifted, mutant_target

pytestmark = pytest.mark.quality


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_is_caught(name):
    mutant = MUTANTS[name]
    target = mutant_target(name)
    specs = find_machines(list(mutant.caught_by))
    assert specs, f"mutant {name} names no existing machine: {mutant.caught_by}"
    # shrinking only makes the counterexample pretty; here we need to know that one exists
    results = [check_machine(spec, target, profile="ci", shrink=False, minimize=False) for spec in specs]
    ran = [r for r in results if r.status != "skipped"]
    assert ran, f"every machine skipped mutant {name}: {[r.reason for r in results]}"
    caught = [r for r in ran if r.status == "failed"]
    errors = [r for r in ran if r.status == "error"]
    assert not errors, f"machine crashed on mutant {name}: {[e.reason for e in errors]}"
    assert caught, f"mutant {name} ({mutant.description}) survived {[(r.machine, r.examples) for r in ran]}"
    broken = [r.reason for r in caught if drifted(r.reason)]
    assert not broken, f"mutant {name} was caught only because its code no longer fits impl: {broken}"
