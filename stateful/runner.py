"""Run machines against a target and summarise: the engine behind ``kvspec check``.

:func:`check_machine` runs one :class:`~kvspec.stateful.engine.machine.MachineSpec` under a Hypothesis
profile and returns a :class:`MachineResult`; on a failure the result carries the shrunk steps as a
trace (:mod:`kvspec.stateful.traces.schema`): a *divergence* trace when model and target disagreed, an
*error* trace when the run failed outside a step (an invariant, or a crash in rule code).

:func:`check` runs many machines, in this process or spread over ``jobs`` worker processes
(:class:`concurrent.futures.ProcessPoolExecutor`; each worker looks its machine up by name and
resolves the target by name itself, so nothing unpicklable crosses a process boundary).

Long runs report progress: every ``progress_every`` seconds a line per running machine with
examples done, steps, steps per second and failing examples so far (a failing example is then
being shrunk).  Hypothesis's example database is configurable (:func:`make_database`).
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from hypothesis import Phase
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as Settings
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase
from hypothesis.stateful import run_state_machine_as_test

from kvspec import profiles
from kvspec.errors import TargetError
from kvspec.stateful.engine import machine as base
from kvspec.stateful.engine.registry import find_machines
from kvspec.stateful.engine.differential import Divergence
from kvspec.targets import Target, resolve

__all__ = [
    "MachineResult", "Progress", "check", "check_machine", "cpu_count", "make_database",
    "print_progress"
]


#: Where examples are kept when no ``--database`` is given (Hypothesis's own default location).
DEFAULT_DATABASE_DIR = ".hypothesis/examples"


@attrs.define
class MachineResult:
    """The outcome of one machine against one target."""

    machine: str
    target: str
    status: str  # passed | failed | known (a documented finding, see MachineSpec.known_failures) | skipped | error
    examples: int = 0
    steps: int = 0
    seconds: float = 0.0
    reason: str = ""
    trace: dict[str, Any] | None = None
    trace_path: str | None = None
    failing_examples: int = 0

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0


@attrs.frozen
class Progress:
    """A progress snapshot of one running machine."""

    machine: str
    target: str
    examples: int
    steps: int
    seconds: float
    failing_examples: int

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        shrinking = " (shrinking)" if self.failing_examples else ""
        return (f"  ... {self.machine} vs {self.target}: {self.examples} examples, {self.steps:,} steps, "
                f"{self.steps_per_second:,.0f} steps/s, {self.failing_examples} failing examples{shrinking}, "
                f"{self.seconds:.0f}s")


def print_progress(progress: Progress) -> None:
    print(progress.line(), file=sys.stderr, flush=True)


def make_database(spec: str | None) -> ExampleDatabase | None:
    """The example database for ``--database``.

    * ``None`` or ``"default"`` — a local directory, :data:`DEFAULT_DATABASE_DIR`;
    * ``"none"`` — no database (nothing is saved or replayed);
    * ``"redis://host:port[/db]"`` — Hypothesis's ``RedisExampleDatabase`` (``pip install
      'hypothesis[redis]'``), shared by every machine that points at it, so a failure found on one
      CI runner is replayed first on every other; the local directory is kept as well
      (a multiplexed database);
    * anything else — a directory path.

    Note: a derandomized profile (``ci``) neither reads nor writes the database; use ``--seed``,
    ``dev`` or ``nightly`` to benefit from it.
    """
    if spec is None or spec == "default":
        return DirectoryBasedExampleDatabase(DEFAULT_DATABASE_DIR)
    if spec == "none":
        return None
    if spec.startswith(("redis://", "rediss://", "unix://")):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError:
            raise TargetError(f"--database {spec} needs the redis client: pip install 'hypothesis[redis]'") from None
        from hypothesis.database import MultiplexedDatabase

        shared = RedisExampleDatabase(redis.Redis.from_url(spec))
        return MultiplexedDatabase(DirectoryBasedExampleDatabase(DEFAULT_DATABASE_DIR), shared)
    return DirectoryBasedExampleDatabase(spec)


def _instrument(machine: type[base.DifferentialMachine]) -> type[base.DifferentialMachine]:
    """A subclass that remembers its last instance and counts failing examples.

    Hypothesis runs the minimal failing example last, so after a failure ``_kvspec_last`` holds the
    machine whose ``run.steps`` are the shrunk steps — what an *error* trace records.
    """

    class Instrumented(machine):  # type: ignore[misc, valid-type]
        _kvspec_last: Any = None
        _kvspec_failing = 0

        def __init__(self) -> None:
            super().__init__()
            type(self)._kvspec_last = self
            apply = self.run.apply

            def counted(step):
                try:
                    return apply(step)
                except Divergence:
                    type(self)._kvspec_failing += 1
                    raise

            self.run.apply = counted  # type: ignore[method-assign]

    Instrumented.__name__ = Instrumented.__qualname__ = machine.__name__
    Instrumented.__module__ = machine.__module__
    return Instrumented


class _Reporter:
    """Calls ``on_progress`` every ``every`` seconds from a daemon thread while a machine runs."""

    def __init__(self, snapshot: Callable[[], Progress], on_progress: Callable[[Progress], None], every: float):
        self._snapshot, self._on_progress, self._every = snapshot, on_progress, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="kvspec-progress")

    def __enter__(self) -> _Reporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._on_progress(self._snapshot())
            except Exception:  # noqa: BLE001 - progress must never break a run
                pass


def check_machine(
    spec: base.MachineSpec,
    target: Target | str,
    *,
    profile: str | None = None,
    max_examples: int | None = None,
    seed: int | None = None,
    database: Any = "default",
    progress_every: float | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    minimize: bool = True,
    shrink: bool = True,
) -> MachineResult:
    """Run ``spec`` against ``target``; never raises for a failure, returns it.

    ``shrink=False`` skips Hypothesis's shrink phase: enough to learn *whether* a target diverges
    (the quality tests), much cheaper than a minimal counterexample.

    ``minimize``: after Hypothesis's shrinking, delete steps the divergence does not need
    (:mod:`kvspec.stateful.traces.minimize`).

    ``database``: ``"default"`` keeps the profile's setting, otherwise an
    :class:`~hypothesis.database.ExampleDatabase`, ``None``, or a ``--database`` string for
    :func:`make_database`.
    """
    target = resolve(target)
    skip = spec.applies_to(target)
    if skip:
        return MachineResult(spec.name, target.name, "skipped", reason=skip)
    profile = profile or profiles.default_profile()
    base_settings = profiles.get(profile)
    overrides: dict[str, Any] = {}
    if max_examples is not None:
        overrides["max_examples"] = max_examples
    if seed is not None:
        overrides["derandomize"] = False
    if not shrink:
        overrides["phases"] = [p for p in base_settings.phases if p is not Phase.shrink]
    if database != "default":
        db = make_database(database) if isinstance(database, str) else database
        if not (base_settings.derandomize and seed is None):
            overrides["database"] = db
    settings = Settings(base_settings, **overrides)
    machine = _instrument(spec.build(target))
    if seed is not None:
        machine = hypothesis_seed(seed)(machine)
    started = time.perf_counter()
    status, reason, trace = "passed", "", None

    def snapshot() -> Progress:
        return Progress(spec.name, target.name, machine.stats.examples, machine.stats.steps,
                        time.perf_counter() - started, machine._kvspec_failing)

    from kvspec.stateful.traces.schema import trace_from_divergence, trace_from_error

    reporter = _Reporter(snapshot, on_progress or print_progress, progress_every) if progress_every else None
    try:
        if reporter:
            reporter.__enter__()
        run_state_machine_as_test(machine, settings=settings)
    except Divergence as divergence:
        status, reason = "failed", divergence.summary
        trace = trace_from_divergence(divergence, spec=spec, target=target, profile=profile, seed=seed,
                                      max_examples=max_examples)
        if minimize:
            trace = _minimized(trace, spec, target)
    except Exception as exc:  # noqa: BLE001 - a crash in an invariant or rule is reported, not hidden
        status, reason = "error", f"{type(exc).__name__}: {exc}".splitlines()[0]
        last = machine._kvspec_last
        if last is not None and last.run.steps:
            trace = trace_from_error(exc, last.run.steps, spec=spec, target=target, profile=profile, seed=seed,
                                     max_examples=max_examples)
    finally:
        if reporter:
            reporter.__exit__()
    elapsed = time.perf_counter() - started
    stats = machine.stats
    finding = spec.known_failures.get(target.name)
    if finding is not None and status == "failed":
        status, reason = "known", f"known finding {finding} (docs/findings.md): {reason}"
    return MachineResult(spec.name, target.name, status, stats.examples, stats.steps, elapsed, reason, trace,
                         failing_examples=machine._kvspec_failing)


def _minimized(trace: dict[str, Any], spec: base.MachineSpec, target: Target) -> dict[str, Any]:
    from kvspec.errors import KvSpecError
    from kvspec.stateful.traces.minimize import minimize_trace
    from kvspec.stateful.traces.schema import validate_trace

    try:
        return dict(minimize_trace(validate_trace(trace), target, spec=spec).data)
    except (KvSpecError, RecursionError):  # the unminimized trace is still a good trace
        return trace


def _check_by_name(name: str, target: str, kwargs: dict[str, Any]) -> MachineResult:
    matches = [s for s in find_machines([name]) if s.name == name]
    if not matches:
        return MachineResult(name, target, "error", reason=f"machine {name!r} not found in worker process")
    return check_machine(matches[0], target, **kwargs)


def check(
    target: str,
    machines: Sequence[str] | None = None,
    *,
    profile: str | None = None,
    max_examples: int | None = None,
    seed: int | None = None,
    jobs: int = 1,
    database: Any = "default",
    progress_every: float | None = None,
    on_result: Callable[[MachineResult], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    minimize: bool = True,
) -> list[MachineResult]:
    """Run every selected machine against ``target`` and return the results in machine order.

    With ``jobs > 1`` machines run in worker processes; ``database`` must then be a string (it is
    rebuilt in each worker), and progress lines are printed by the workers themselves.
    """
    specs = find_machines(machines)
    kwargs: dict[str, Any] = dict(profile=profile, max_examples=max_examples, seed=seed, database=database,
                                  progress_every=progress_every, minimize=minimize)
    results: dict[str, MachineResult] = {}
    if jobs <= 1 or len(specs) <= 1:
        for spec in specs:
            result = check_machine(spec, target, on_progress=on_progress, **kwargs)
            results[spec.name] = result
            if on_result:
                on_result(result)
    else:
        if not isinstance(database, str):
            raise TypeError("with jobs > 1, database must be a --database string")
        with concurrent.futures.ProcessPoolExecutor(max_workers=min(jobs, len(specs))) as pool:
            futures = {pool.submit(_check_by_name, s.name, target, kwargs): s.name for s in specs}
            for future in concurrent.futures.as_completed(futures):
                name = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - a worker died (e.g. out of memory)
                    result = MachineResult(name, str(target), "error", reason=f"worker failed: {exc!r}")
                results[name] = result
                if on_result:
                    on_result(result)
    return [results[s.name] for s in specs]


def cpu_count() -> int:
    """CPUs this process may use (for ``-j 0``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1

