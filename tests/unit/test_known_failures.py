"""A machine's documented finding against one target is reported as ``known``, nowhere else."""

import attrs

from kvspec.stateful.engine.registry import find_machines
from kvspec.stateful.runner import check_machine


def test_known_failure_is_reported_as_known_only_for_its_target():
    (spec,) = find_machines(["pool[lru,allow]"])
    marked = attrs.evolve(spec, known_failures={"mutant:evict-before-free": "X1"})
    known = check_machine(marked, "mutant:evict-before-free", profile="ci", shrink=False, minimize=False)
    assert known.status == "known" and "X1" in known.reason
    other = check_machine(marked, "mutant:release-to-front", profile="ci", shrink=False, minimize=False)
    assert other.status == "failed"
    clean = check_machine(marked, "impl", profile="ci", max_examples=5)
    assert clean.status == "passed"
