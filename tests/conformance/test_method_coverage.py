"""No public method can break unseen: each machine calls every public method of every class it
drives, and on a state where the answer could have been different.

"Could have been different" is judged on the model's own outcome of each call:

* a method that returns something must at least once return a non-empty, non-zero value or raise
  a typed error (``find_matches`` on an empty index always answers "nothing": such calls prove
  nothing);
* a method that returns ``None`` (a mutator) must at least once change one of the observers the
  machine compares, or raise a typed error;
* an observer must at least once report a non-empty value.

Each machine runs against ``impl`` with the ``ci`` budget and no shrinking, recording the
model's outcome of every step.
"""

from __future__ import annotations

import inspect
from collections import defaultdict

import pytest

import kvspec.model
from kvspec import codec
from kvspec._exports import EXPORTS
from kvspec.stateful.engine.differential import Differential
from kvspec.stateful.engine.registry import all_machines
from kvspec.stateful.runner import check_machine

pytestmark = pytest.mark.stateful

SPECS = [s for s in all_machines() if "exact" in s.modes and set(s.requires) <= set(EXPORTS)
         and "impl" not in s.known_failures]  # a machine documenting a finding on impl is checked in tests/engines

#: Methods a machine may leave alone, with the reason (kept short and justified): ``(class, method)``
#: for every machine, ``(machine, class, method)`` for one.
NOT_DRIVEN = {
    # upstream's passthrough tracker stores nothing: its block count is 0 by definition
    ("PassthroughTracker", "num_blocks"),
    # a routing decision prunes as soon as the tree outgrows max_tree_size (the only way it grows),
    # so a prune() of its own always finds it within bounds: called and compared, always []
    ("ApproxIndex", "prune"),
    ("RouterIndexer", "prune"),
    # lanes-router publishes valid events only (the shape a real router gets): nothing is dropped
    ("lanes-router", "LanedIndex", "dropped"),
    # what the cache holds, read by the router invariants on both sides after every step (not a
    # step of its own): a wrong answer shows as a router discrepancy there
    ("VllmPrefixCache", "held_hashes"),
    ("SglangRadixCache", "held_hashes"),
}


def _nontrivial(value) -> bool:
    if value is None or value is False:
        return False
    try:
        canonical = codec.canonical(value)
    except Exception:  # noqa: BLE001 - an odd value is still an answer
        return True
    return canonical not in (0, [], {}, "", ())


def _public_methods(cls: type) -> set[str]:
    return {name for name, member in inspect.getmembers(cls, callable)
            if not name.startswith("_") and not isinstance(member, type)}


def _record(monkeypatch) -> dict[tuple[str, str], set[str]]:
    """Wrap Differential.apply: (class, method) -> kinds of evidence seen ("answer", "error", "change")."""
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    real = Differential.apply

    def apply(self, step):
        before = {k: v[0] for k, v in self._last_observed.items()}
        try:
            return real(self, step)
        finally:
            if self.outcomes and self.steps and self.steps[-1] is step:
                expected = self.outcomes[-1][0]
                cls = step.cls if step.is_create else self.classes.get(step.subject)
                key = (cls, step.method)
                seen[key].add("called")
                if expected.error is not None:
                    seen[key].add("error")
                elif _nontrivial(expected.value):
                    seen[key].add("answer")
                previous = before.get(step.subject, {})
                for name, now in expected.observed.items():
                    if _nontrivial(now):
                        seen[(cls, name)].add("answer")
                    if name in previous and codec.canonical(previous[name]) != codec.canonical(now):
                        seen[key].add("change")

    monkeypatch.setattr(Differential, "apply", apply)
    return seen


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_every_public_method_is_driven_where_it_matters(spec, monkeypatch):
    seen = _record(monkeypatch)
    result = check_machine(spec, "impl", profile="ci", database=None, shrink=False)
    assert result.status == "passed", result.reason
    driven = {cls for cls, _ in seen if cls is not None}
    assert driven, "the machine created no subject"
    problems = []
    for cls in sorted(driven & set(EXPORTS)):
        observers = set(spec.build(kvspec_target()).observers.get(cls, ()))
        for method in sorted(_public_methods(getattr(kvspec.model, cls))):
            if (cls, method) in NOT_DRIVEN or (spec.name, cls, method) in NOT_DRIVEN:
                continue
            evidence = seen.get((cls, method), set())
            if method in observers:
                if "answer" not in evidence:
                    problems.append(f"{cls}.{method}(): observed, but never non-empty")
            elif "called" not in evidence:
                problems.append(f"{cls}.{method}(): never called")
            elif not evidence & {"answer", "error", "change"}:
                problems.append(f"{cls}.{method}(): called only where its answer cannot differ")
    assert not problems, "\n".join(problems)


def kvspec_target():
    from kvspec.targets import resolve

    return resolve("impl")
