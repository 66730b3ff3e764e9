"""Run machines against a target and summarise: the engine behind ``kvspec check``.

:func:`check_machine` runs one :class:`~kvspec.stateful.base.MachineSpec` under a Hypothesis
profile and returns a :class:`MachineResult`; on a divergence the result carries the shrunk steps
as a trace (``kvspec.stateful.trace``).  :func:`check` runs many, optionally spread over processes
with :mod:`concurrent.futures` (each worker resolves the target by name itself).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as Settings
from hypothesis.stateful import run_state_machine_as_test

from kvspec import profiles
from kvspec.stateful.base import MachineSpec, find_machines
from kvspec.stateful.differential import Divergence
from kvspec.targets import Target, resolve


@attrs.define
class MachineResult:
    """The outcome of one machine against one target."""

    machine: str
    target: str
    status: str  # passed | failed | skipped | error
    examples: int = 0
    steps: int = 0
    seconds: float = 0.0
    reason: str = ""
    trace: dict[str, Any] | None = None
    trace_path: str | None = None

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0


def check_machine(
    spec: MachineSpec,
    target: Target | str,
    *,
    profile: str | None = None,
    max_examples: int | None = None,
    seed: int | None = None,
    database: Any = "default",
) -> MachineResult:
    """Run ``spec`` against ``target``; never raises for a divergence, returns it."""
    target = resolve(target)
    skip = spec.applies_to(target)
    if skip:
        return MachineResult(spec.name, target.name, "skipped", reason=skip)
    profile = profile or profiles.default_profile()
    base = profiles.load(profile)
    overrides: dict[str, Any] = {}
    if max_examples is not None:
        overrides["max_examples"] = max_examples
    if seed is not None:
        overrides["derandomize"] = False
    if database != "default":
        overrides["database"] = database
    settings = Settings(base, **overrides)
    machine = spec.build(target)
    if seed is not None:
        machine = hypothesis_seed(seed)(machine)
    started = time.perf_counter()
    status, reason, trace = "passed", "", None
    try:
        run_state_machine_as_test(machine, settings=settings)
    except Divergence as divergence:
        from kvspec.stateful.trace import trace_from_divergence

        status, reason = "failed", divergence.summary
        trace = trace_from_divergence(divergence, spec=spec, target=target, profile=profile, seed=seed)
    except Exception as exc:  # noqa: BLE001 - a crash in the model or machine is reported, not hidden
        status, reason = "error", f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - started
    stats = machine.stats
    return MachineResult(spec.name, target.name, status, stats.examples, stats.steps, elapsed, reason, trace)


def _check_by_name(name: str, target: str, kwargs: dict[str, Any]) -> MachineResult:
    (spec,) = [s for s in find_machines([name]) if s.name == name]
    return check_machine(spec, target, **kwargs)


def check(
    target: str,
    machines: Sequence[str] | None = None,
    *,
    profile: str | None = None,
    max_examples: int | None = None,
    seed: int | None = None,
    jobs: int = 1,
    on_result: Callable[[MachineResult], None] | None = None,
) -> list[MachineResult]:
    """Run every selected machine against ``target`` and return the results in machine order."""
    specs = find_machines(machines)
    kwargs = dict(profile=profile, max_examples=max_examples, seed=seed)
    results: dict[str, MachineResult] = {}
    if jobs <= 1:
        for spec in specs:
            result = check_machine(spec, target, **kwargs)
            results[spec.name] = result
            if on_result:
                on_result(result)
    else:
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(_check_by_name, s.name, target, kwargs): s.name for s in specs}
            for future in concurrent.futures.as_completed(futures):
                result = future.result()
                results[futures[future]] = result
                if on_result:
                    on_result(result)
    return [results[s.name] for s in specs]
