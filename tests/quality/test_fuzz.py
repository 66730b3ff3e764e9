"""Quality: the fuzz mode (``kvspec check --fuzz``) catches every self-test mutant within a bounded
number of steps, finds nothing on ``impl`` under the same seed, and writes a trace that replays.

The budget: every mutant was caught within ~5,000 steps of its first catching machine over seeds
0-5 (``kvspec bench fuzz``, table 2, prints the steps each one took); :data:`BUDGET` per machine
leaves a wide margin, and a mutant names up to eight machines.  The fuzz mode is deterministic
for a seed, so these tests do not depend on what else ran in the process.
"""

import pytest

from kvspec.stateful.engine.registry import find_machines
from kvspec.stateful.fuzz import fuzz_machine
from kvspec.stateful.mutants import MUTANTS, drifted, mutant_target

pytestmark = pytest.mark.quality

#: steps per machine before the next machine the mutant names is tried
BUDGET = 20_000
SEED = 0


def _first_catch(name: str, minimize: bool = False):
    mutant = MUTANTS[name]
    target = mutant_target(name)
    specs = find_machines(list(mutant.caught_by))
    assert specs, f"mutant {name} names no existing machine: {mutant.caught_by}"
    tried = []
    for spec in specs:
        result = fuzz_machine(spec, target, steps=BUDGET, seed=SEED, minimize=minimize)
        tried.append((spec.name, result.status, result.steps))
        if result.status != "passed" and result.status != "skipped":
            return result, tried
    return None, tried


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_fuzz_catches_every_mutant(name):
    specs = find_machines(list(MUTANTS[name].caught_by))
    if not [s for s in specs if "exact" in s.modes and not getattr(s.factory, "fuzz_unsupported", None)]:
        reason = next(s.factory.fuzz_unsupported for s in specs if getattr(s.factory, "fuzz_unsupported", None))
        pytest.skip(f"every machine of {name} is outside the fuzz mode: {reason}")
    result, tried = _first_catch(name)
    assert result is not None, f"mutant {name} ({MUTANTS[name].description}) survived the fuzz mode: {tried}"
    assert result.status == "failed", f"{name}: {result.status}: {result.reason}"
    assert not drifted(result.reason), f"{name} was caught only because its code no longer fits impl: {result.reason}"
    assert result.first_failure_steps <= BUDGET + 200  # a run may overshoot the budget by its length
    trace = result.trace
    assert trace["kind"] == "divergence"
    assert trace["seed"] == result.failing_seed
    assert trace["command"].startswith("kvspec check --fuzz ") and f"--seed {result.failing_seed}" in trace["command"]


def test_fuzz_finds_nothing_on_impl():
    """The control: the machines the mutants name, same seed, against the real implementation."""
    names = sorted({spec.name for m in MUTANTS.values() for spec in find_machines(list(m.caught_by))})
    results = [fuzz_machine(spec, "impl", steps=3_000, seed=SEED) for spec in find_machines(names)
               if spec.name in names]
    assert len(results) == len(names)
    bad = [(r.machine, r.status, r.reason) for r in results if r.status not in ("passed", "skipped")]
    assert not bad
    outside = sum(bool(getattr(s.factory, "fuzz_unsupported", None)) for s in find_machines(names) if s.name in names)
    assert sum(r.status == "passed" for r in results) >= len(results) - 2 - outside  # contract-only machines skip


def test_fuzz_trace_is_minimized_and_replays():
    from kvspec.stateful.traces.replay import replay_trace
    from kvspec.stateful.traces.schema import validate_trace

    result, _ = _first_catch("upstream-merged-anchoring", minimize=True)
    trace = validate_trace(result.trace)
    assert trace.kind == "divergence" and trace.data["seed"] == result.failing_seed
    assert len(trace.steps) <= result.first_failure_steps
    replayed = replay_trace(trace, mutant_target("upstream-merged-anchoring"))
    assert replayed.reproduced
    # the seed in the trace re-runs the failing run first
    spec = next(s for s in find_machines([result.machine]) if s.name == result.machine)
    again = fuzz_machine(spec, mutant_target("upstream-merged-anchoring"), seed=result.failing_seed, minimize=False)
    assert again.status == "failed" and again.examples == 1
