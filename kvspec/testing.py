"""Run kvspec's machines from your own test suite: one line per machine in a pytest (or unittest) file.

::

    # tests/test_kvspec.py of your engine's repository
    import kvspec.testing

    TestRadix = kvspec.testing.machine_test_case("radix", "mypkg.kvspec_adapter")

pytest collects ``TestRadix`` like any ``unittest.TestCase``.  What you get:

* Hypothesis's own pytest integration: your settings profile (``--hypothesis-profile``, or
  ``settings.load_profile`` in ``conftest.py``), the example database, ``--hypothesis-seed``,
  ``--hypothesis-show-statistics`` (with kvspec's per-rule and per-error events), and pytest's
  ``--junitxml``;
* kvspec's comparison (the machine's exact or contract mode, per the target's ``KVSPEC_MODE``);
* on a failure, kvspec's minimized trace is written (``$KVSPEC_TRACE_DIR``, default
  ``kvspec-traces/``) and the failure message ends with the ``kvspec replay`` and ``kvspec report``
  commands for it;
* an adapter that lacks a method the machine calls fails at once with the list of what is
  missing (the same pre-flight check as ``kvspec check``), and a machine whose classes the target
  does not provide is skipped with the reason.

Shrinking stops after ``$KVSPEC_MAX_SHRINK_SECONDS`` (default 60; ``0``: unlimited) and the
smallest failure seen is reported, as with ``kvspec check``.  Only the profile's budget is used (``max_examples``, ``stateful_step_count``); kvspec adds
``deadline=None`` (a step may be slow) and silences the ``too_slow`` health check, nothing else.
Pass ``settings=`` to choose explicitly.

>>> TestRadix = machine_test_case("radix", "impl")
>>> TestRadix.__name__, issubclass(TestRadix, __import__("unittest").TestCase)
('TestRadix_impl', True)
"""

from __future__ import annotations

import os
import shlex
import unittest
from collections import Counter
from typing import Any

from hypothesis import HealthCheck
from hypothesis import settings as Settings
from hypothesis.stateful import run_state_machine_as_test

from kvspec.errors import TargetError
from kvspec.stateful.engine.differential import Divergence
from kvspec.stateful.engine.registry import lookup_machine
from kvspec.stateful.machines.interface import preflight
from kvspec.stateful.runner import StopRun, _Budget, _instrument, _minimized
from kvspec.stateful.traces.schema import trace_from_divergence, write_trace
from kvspec.targets import Target, is_registered, resolve

__all__ = ["machine_test_case"]


def _shrink_budget() -> float | None:
    """``KVSPEC_MAX_SHRINK_SECONDS`` (default 60, as ``kvspec check``; ``0``: unlimited)."""
    raw = os.environ.get("KVSPEC_MAX_SHRINK_SECONDS", "60")
    try:
        seconds = float(raw)
    except ValueError:
        raise TargetError(f"KVSPEC_MAX_SHRINK_SECONDS={raw!r} is not a number") from None
    return seconds if seconds > 0 else None


def _default_settings() -> Settings:
    """The active profile (the user's), with no deadline and no ``too_slow`` health check."""
    active = Settings.default
    suppressed = set(active.suppress_health_check) | {HealthCheck.too_slow, HealthCheck.data_too_large}
    return Settings(active, deadline=None, suppress_health_check=sorted(suppressed, key=lambda h: h.name))


def machine_test_case(machine: str, target: str | Target, *, settings: Settings | None = None,
                      trace_dir: str | None = None) -> type[unittest.TestCase]:
    """A ``unittest.TestCase`` class that runs kvspec machine ``machine`` against ``target``.

    ``machine`` is a name from ``kvspec list`` (``"radix"``, ``"pool[lru,allow]"``...); ``target``
    a registered name or an import path ``module[:attribute]`` (your adapter).  The target is
    resolved now, at collection time, so a typo fails where it is written.
    """
    spec = lookup_machine(machine)
    resolved = resolve(target)
    chosen = settings
    directory = trace_dir
    name = "Test" + "".join(ch if ch.isalnum() else "_" for ch in f"{spec.name.title()}_{resolved.name}")
    name = name.replace("__", "_").strip("_")

    class MachineTestCase(unittest.TestCase):
        kvspec_machine = spec
        kvspec_target = resolved

        def runTest(self) -> None:
            skip = spec.applies_to(resolved)
            if skip:
                raise unittest.SkipTest(f"kvspec machine {spec.name}: {skip}")
            problems = preflight(spec, resolved)
            if problems:
                raise TargetError(f"the adapter {resolved.name} cannot run machine {spec.name} "
                                  f"(docs/adapters.md): " + "; ".join(problems))
            budget = _Budget(max_shrink_seconds=_shrink_budget())
            built = _instrument(spec.build(resolved), budget, Counter())
            try:
                run_state_machine_as_test(built, settings=chosen if chosen is not None else _default_settings())
            except StopRun:  # the shrink budget ran out: report the smallest divergence seen
                best = built._kvspec_best
                if best is None:
                    raise AssertionError(f"kvspec machine {spec.name} failed outside a step; shrinking stopped "
                                         f"after {budget.max_shrink_seconds:g}s (KVSPEC_MAX_SHRINK_SECONDS)") from None
                best.add_note(f"kvspec: shrinking stopped after {budget.max_shrink_seconds:g}s "
                              "(KVSPEC_MAX_SHRINK_SECONDS); this is the smallest failure seen")
                _note_trace(best, spec, resolved, directory)
                raise best from None
            except Divergence as divergence:
                _note_trace(divergence, spec, resolved, directory)
                raise

        # Hypothesis's pytest plugin then reports statistics and honours its options for this test
        runTest.is_hypothesis_test = True  # type: ignore[attr-defined]

    MachineTestCase.__name__ = MachineTestCase.__qualname__ = name
    return MachineTestCase


def _note_trace(divergence: Divergence, spec: Any, target: Target, directory: str | None) -> None:
    """Write the minimized trace of ``divergence`` and add how to replay and report it to the failure."""
    trace = trace_from_divergence(divergence, spec=spec, target=target, profile=None, seed=None)
    trace = _minimized(trace, spec, target)
    try:
        path = str(write_trace(trace, directory or os.environ.get("KVSPEC_TRACE_DIR", "kvspec-traces")))
    except OSError as exc:
        divergence.add_note(f"kvspec: could not write the trace: {exc}")
        return
    quoted = shlex.quote(path) + ("" if is_registered(target.name) else f" --target {shlex.quote(target.name)}")
    divergence.add_note(f"kvspec: minimized to {len(trace['steps'])} steps: {trace['summary']}")
    divergence.add_note(f"kvspec: trace written to {path}")
    divergence.add_note(f"kvspec: replay with: kvspec replay {quoted} --draw")
    divergence.add_note(f"kvspec: report with: kvspec report {quoted} -o bug.md --pytest test_bug.py")
