"""``kvspec bench fuzz``: ``kvspec check --fuzz`` against ``kvspec check``, in one run.

Three tables, each from this one process, both sides measured in CPU time of the process
(:func:`time.process_time`: other processes on a shared machine slow both sides alike, but do not
count):

1. **steps per second** per machine against ``impl``: ``kvspec check`` as it runs by default
   (profile ``dev``, no example database, a fresh seed per round) and the fuzz mode (default
   settings, ``--steps`` steps), interleaved machine by machine and repeated ``--rounds`` times;
   min / median / max of each side and the median of the per-round ratios;
2. **time to the first failing example** for every self-test mutant: the machines the mutant names,
   tried in order until one fails; Hypothesis without shrinking (``ci`` settings with a seed and at
   most ``--max-examples`` examples per machine) against the fuzz mode (at most ``--fuzz-budget``
   steps per machine), the median over ``--seeds`` seeds; a mutant not found within the budget
   shows ``>`` the time spent;
3. **rule coverage**: how often each rule ran, as a share of all rule calls, under both drivers
   (one machine per family), so that a rule the fuzz mode starves (or floods) shows.

Strategies the fuzz mode could not compile (drawn through Hypothesis's engine instead) are listed
at the end.  A benchmark: it prints ratios and never asserts on time.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

__all__ = ["counting", "main"]

DEFAULT_MACHINES = ("manager", "pool", "radix")
COVERAGE_MACHINES = ("manager[lru]", "pool[lru,allow]", "radix")


def counting(machine: type) -> tuple[type, Counter]:
    """A subclass of the Hypothesis machine ``machine`` that counts its rule calls (for table 3)."""
    from hypothesis.stateful import Rule

    counts: Counter = Counter()
    attributes: dict[str, Any] = {}
    for rule in machine.setup_state().rules:
        function = rule.function

        def counted(self, *args, __f=function, **kwargs):
            counts[__f.__name__] += 1
            return __f(self, *args, **kwargs)

        counted.__name__ = counted.__qualname__ = function.__name__
        counted.hypothesis_stateful_rule = Rule(targets=rule.targets, function=counted, arguments=rule.arguments,
                                                preconditions=rule.preconditions)
        attributes[function.__name__] = counted
    attributes["__module__"] = machine.__module__
    return type(machine.__name__, (machine,), attributes), counts


def _spec(name: str):
    from kvspec.stateful.engine.registry import find_machines

    return next(s for s in find_machines([name]) if s.name == name)


def _hypothesis(spec, target, *, profile: str, seed: int, max_examples: int | None = None,
                machine: type | None = None) -> tuple[Any, float]:
    """``kvspec check`` on one machine, without shrinking or minimizing: (result, CPU seconds)."""
    from kvspec.stateful import runner

    if machine is not None:  # run a given (counting) machine class through the same runner
        spec = _Built(spec, machine)
    gc.collect()  # both sides start from a clean heap: no collection owed by the other side
    started = time.process_time()
    result = runner.check_machine(spec, target, profile=profile, seed=seed, max_examples=max_examples,
                                  database="none", shrink=False, minimize=False)
    return result, time.process_time() - started


class _Built:
    """A :class:`MachineSpec` stand-in whose ``build`` returns a prepared class."""

    def __init__(self, spec, machine: type) -> None:
        self._spec, self._machine = spec, machine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._spec, name)

    def build(self, target) -> type:
        return self._machine


def _fuzz(spec, target, *, steps: int, seed: int, minimize: bool = False) -> tuple[Any, float]:
    from kvspec.stateful.fuzz import fuzz_machine

    gc.collect()
    started = time.process_time()
    result = fuzz_machine(spec, target, steps=steps, seed=seed, minimize=minimize)
    return result, time.process_time() - started


def _spread(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def steps_per_second(machines: Sequence[str], rounds: int, steps: int, profile: str) -> None:
    from kvspec.stateful.engine.registry import find_machines

    specs = find_machines(list(machines))
    print(f"\n## 1. steps/s against impl (CPU time; min/median/max of {rounds} interleaved rounds)\n")
    print(f"check: profile {profile}, no database, seed = round; fuzz: {steps:,} steps per round, seed = round\n")
    print("| machine | check steps | check CPU s | check steps/s | fuzz steps | fuzz CPU s | fuzz steps/s "
          "| fuzz/check (median) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    totals = {"check": [0, 0.0], "fuzz": [0, 0.0]}
    lowest: list[tuple[float, str]] = []
    for spec in specs:
        check_rates, fuzz_rates, ratios, check_steps, fuzz_steps = [], [], [], 0, 0
        check_cpu = fuzz_cpu = 0.0
        for r in range(rounds):
            result, cpu = _hypothesis(spec, "impl", profile=profile, seed=r)
            check_rates.append(result.steps / cpu)
            check_steps += result.steps
            check_cpu += cpu
            fuzzed, fcpu = _fuzz(spec, "impl", steps=steps, seed=r)
            fuzz_rates.append(fuzzed.steps / fcpu)
            fuzz_steps += fuzzed.steps
            fuzz_cpu += fcpu
            ratios.append(fuzz_rates[-1] / check_rates[-1])
        for side, steps_run, seconds in (("check", check_steps, check_cpu), ("fuzz", fuzz_steps, fuzz_cpu)):
            totals[side][0] += steps_run
            totals[side][1] += seconds
        lowest.append((statistics.median(ratios), spec.name))
        print(f"| {spec.name} | {check_steps:,} | {check_cpu:.2f} | {_spread(check_rates)} | {fuzz_steps:,} "
              f"| {fuzz_cpu:.2f} | {_spread(fuzz_rates)} | {lowest[-1][0]:.1f}x |", flush=True)
    check_rate = totals["check"][0] / totals["check"][1]
    fuzz_rate = totals["fuzz"][0] / totals["fuzz"][1]
    print(f"| **all** | {totals['check'][0]:,} | {totals['check'][1]:.2f} | {check_rate:,.0f} | {totals['fuzz'][0]:,} "
          f"| {totals['fuzz'][1]:.2f} | {fuzz_rate:,.0f} | {fuzz_rate / check_rate:.1f}x |")
    ratio, name = min(lowest)
    print(f"\nlowest machine ratio: {ratio:.1f}x ({name}); under 10x: "
          f"{', '.join(f'{n} {r:.1f}x' for r, n in sorted(lowest) if r < 10) or 'none'}")


def _first_failure(mutant, driver: str, seed: int, max_examples: int, budget: int) -> tuple[float, int, bool]:
    """CPU seconds and steps until one of the mutant's machines fails (``found`` False: budget spent)."""
    from kvspec.stateful.engine.registry import find_machines
    from kvspec.stateful.mutants import mutant_target

    target = mutant_target(mutant.name)
    seconds, steps = 0.0, 0
    for spec in find_machines(list(mutant.caught_by)):
        if driver == "hypothesis":
            result, cpu = _hypothesis(spec, target, profile="ci", seed=seed, max_examples=max_examples)
        else:
            result, cpu = _fuzz(spec, target, steps=budget, seed=seed)
        seconds += cpu
        failed = result.status in ("failed", "error")
        steps += (result.first_failure_steps or result.steps) if driver == "fuzz" and failed else result.steps
        if failed:
            return seconds, steps, True
    return seconds, steps, False


def time_to_failure(mutants: Sequence[str] | None, seeds: int, max_examples: int, budget: int) -> None:
    from kvspec.stateful.mutants import MUTANTS

    names = sorted(n for n in MUTANTS if not mutants or any(n.startswith(m) for m in mutants))
    print(f"\n## 2. time to the first failing example per mutant (CPU seconds, median of {seeds} seeds)\n")
    print(f"hypothesis: ci settings, a seed, no shrinking, <= {max_examples} examples per machine; "
          f"fuzz: <= {budget:,} steps per machine; machines tried in the mutant's order until one fails\n")
    print("| mutant | hypothesis s | hypothesis steps | fuzz s | fuzz steps | hypothesis/fuzz |")
    print("|---|---:|---:|---:|---:|---:|")
    from kvspec.stateful.engine.registry import find_machines
    from kvspec.stateful.mutants import mutant_target
    from kvspec.targets import resolve

    all_h, all_f = [], []
    for name in names:
        target = resolve(mutant_target(name))
        skips = [getattr(s.factory, "fuzz_unsupported", None) or s.applies_to(target)
                 for s in find_machines(list(MUTANTS[name].caught_by))]
        if all(skips):  # what fuzz_machine skips; not in the totals
            print(f"| {name} | | | skipped | | every machine is outside the fuzz mode: {skips[0]} |", flush=True)
            continue
        rows = {}
        for driver in ("hypothesis", "fuzz"):
            runs = [_first_failure(MUTANTS[name], driver, seed, max_examples, budget) for seed in range(seeds)]
            found = all(r[2] for r in runs)
            rows[driver] = (statistics.median(r[0] for r in runs), int(statistics.median(r[1] for r in runs)), found)
        (hs, hn, hf), (fs, fn, ff) = rows["hypothesis"], rows["fuzz"]
        all_h.append(hs)
        all_f.append(fs)
        mark = lambda ok: "" if ok else ">"  # noqa: E731
        print(f"| {name} | {mark(hf)}{hs:.2f} | {hn:,} | {mark(ff)}{fs:.2f} | {fn:,} | {hs / fs if fs else float('inf'):.1f}x |",
              flush=True)
    print(f"| **total** | {sum(all_h):.1f} | | {sum(all_f):.1f} | | {sum(all_h) / sum(all_f):.1f}x |")


def coverage(machines: Sequence[str], steps: int, profile: str) -> None:
    from kvspec.stateful.fuzz import FuzzRules, fuzz_machine

    print(f"\n## 3. rule coverage: share of rule calls (check: profile {profile}, seed 0; fuzz: {steps:,} steps)\n")
    for name in machines:
        spec = _spec(name)
        machine, counts = counting(spec.build(_target("impl")))
        _hypothesis(spec, "impl", profile=profile, seed=0, machine=machine)
        fuzzed = fuzz_machine(spec, "impl", steps=steps, seed=0, minimize=False)
        rules = FuzzRules(machine).names
        fuzz_counts = {k: v for k, v in fuzzed.rule_counts.items() if k in rules}
        h_total, f_total = sum(counts.values()) or 1, sum(fuzz_counts.values()) or 1
        print(f"{name}: {h_total:,} rule calls under check, {f_total:,} under fuzz\n")
        print("| rule | check % | fuzz % |")
        print("|---|---:|---:|")
        for rule in rules:
            print(f"| {rule} | {100 * counts[rule] / h_total:.1f} | {100 * fuzz_counts.get(rule, 0) / f_total:.1f} |")
        print()


def _target(name: str):
    from kvspec.targets import resolve

    return resolve(name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kvspec bench fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--machine", action="append", help=f"machine name or prefix (default: {' '.join(DEFAULT_MACHINES)})")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds for table 1 (default 3)")
    parser.add_argument("--steps", type=int, default=10_000, help="fuzz steps per machine and round (default 10,000)")
    parser.add_argument("--profile", default="dev", choices=["dev", "ci", "nightly"],
                        help="profile of the check side in tables 1 and 3 (default dev, kvspec check's default)")
    parser.add_argument("--mutant", action="append", help="only mutants starting with this (repeatable)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per mutant and driver in table 2 (default 3)")
    parser.add_argument("--max-examples", type=int, default=500, help="Hypothesis examples per machine in table 2")
    parser.add_argument("--fuzz-budget", type=int, default=50_000, help="fuzz steps per machine in table 2")
    parser.add_argument("--only", choices=["speed", "mutants", "coverage"], help="print one table only")
    args = parser.parse_args(list(argv or []))
    from kvspec.stateful.engine.draws import FALLBACKS
    from kvspec.stateful.fuzz import DEFAULT_CHECKPOINT_EVERY, DEFAULT_INVARIANTS_EVERY, DEFAULT_RUN_LENGTH

    print(f"# kvspec bench fuzz: fuzz mode (run length {DEFAULT_RUN_LENGTH} rules, state compared every "
          f"{DEFAULT_CHECKPOINT_EVERY} steps, invariants every {DEFAULT_INVARIANTS_EVERY} rules) vs kvspec check")
    if args.only in (None, "speed"):
        steps_per_second(args.machine or DEFAULT_MACHINES, args.rounds, args.steps, args.profile)
    if args.only in (None, "mutants"):
        time_to_failure(args.mutant, args.seeds, args.max_examples, args.fuzz_budget)
    if args.only in (None, "coverage"):
        coverage(COVERAGE_MACHINES, args.steps, args.profile)
    print(f"\nstrategies drawn through Hypothesis's engine (not compiled): {dict(FALLBACKS) or 'none'}")
    return 0
