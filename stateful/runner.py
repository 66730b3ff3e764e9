"""Run machines against a target and summarise: the engine behind ``kvspec check``.

:func:`check_machine` runs one :class:`~kvspec.stateful.engine.machine.MachineSpec` under a Hypothesis
profile and returns a :class:`MachineResult`; on a failure the result carries the shrunk steps as a
trace (:mod:`kvspec.stateful.traces.schema`): a *divergence* trace when model and target disagreed, an
*error* trace when the run failed outside a step (an invariant, or a crash in rule code).

:func:`check` runs many machines, in this process or spread over ``jobs`` worker processes
(:class:`concurrent.futures.ProcessPoolExecutor`; each worker looks its machine up by name and
resolves the target by name itself, so nothing unpicklable crosses a process boundary).

Long runs report progress: every ``progress_every`` seconds a :class:`Progress` snapshot per
running machine (examples done of the budget, steps per second, failing examples while
shrinking, ETA), printed as a plain line or drawn live by the command line.  Hypothesis's example
database is configurable (:func:`make_database`).

Control, checked between two steps of a machine (a safe point: never inside Hypothesis's own
bookkeeping): a time budget per machine (:func:`check` spreads ``duration`` over the machines), a
shrink budget after the first failure (the smallest divergence seen is reported), and Ctrl-C
(:func:`interrupt_handler` sets :data:`INTERRUPT`; the run stops at the next step with status
``interrupted``).  Stopping raises :class:`StopRun`, which Hypothesis neither shrinks nor saves.
Before a machine runs, its calls are checked against the target
(:func:`kvspec.stateful.machines.interface.preflight`): an incomplete adapter is status
``adapter``, not a divergence.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from hypothesis import Phase, event
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as Settings
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase
from hypothesis.stateful import run_state_machine_as_test
from hypothesis.statistics import collector

from kvspec import profiles
from kvspec.errors import KvSpecError, TargetError
from kvspec.stateful.engine import machine as base
from kvspec.stateful.engine.registry import find_machines
from kvspec.stateful.engine.differential import Divergence
from kvspec.targets import Target, resolve

__all__ = [
    "INTERRUPT", "MachineResult", "Progress", "StopRun", "check", "check_machine", "cpu_count",
    "interrupt_handler", "make_database", "new_seed", "print_progress"
]


#: Where examples are kept when no ``--database`` is given (Hypothesis's own default location).
DEFAULT_DATABASE_DIR = ".hypothesis/examples"


@attrs.define
class MachineResult:
    """The outcome of one machine against one target."""

    machine: str
    target: str
    #: passed | failed | known (a documented finding, see MachineSpec.known_failures) | skipped |
    #: error (a failure outside the steps) | adapter (the pre-flight check failed) | interrupted
    status: str
    examples: int = 0
    steps: int = 0
    seconds: float = 0.0
    reason: str = ""
    trace: dict[str, Any] | None = None
    trace_path: str | None = None
    failing_examples: int = 0
    #: the Hypothesis seed of the run (``None``: a derandomized profile)
    seed: int | None = None
    #: the target crashed (a non-kvspec exception) or its adapter is incomplete: exit status 3
    crashed: bool = False
    max_examples: int | None = None
    #: examples run while shrinking a failure (not counted in ``examples``)
    shrink_examples: int = 0
    #: ``stats=True``: rules, errors, model/target seconds, invalid draws (see ``check_machine``)
    stats: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The machine-readable summary ``kvspec check --json`` writes."""
        return {
            "machine": self.machine, "target": self.target, "result": self.status, "crashed": self.crashed,
            "examples": self.examples, "steps": self.steps, "seconds": round(self.seconds, 3),
            "seed": self.seed, "reason": self.reason, "trace": self.trace_path,
            "failing_examples": self.failing_examples, "shrink_examples": self.shrink_examples,
            **({"stats": self.stats} if self.stats else {}),
        }

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
    max_examples: int | None = None
    #: ``time.monotonic()`` at which the time budget ends generation, if any
    deadline: float | None = None
    done: bool = False

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0

    @property
    def shrinking(self) -> bool:
        return self.failing_examples > 0

    @property
    def eta(self) -> float | None:
        """Seconds left: by the example budget at the current rate, or the time budget if sooner."""
        if self.shrinking or self.done:
            return None
        left = []
        if self.max_examples and self.examples and self.seconds > 0:
            left.append(max(0.0, (self.max_examples - self.examples) * self.seconds / self.examples))
        if self.deadline is not None:
            left.append(max(0.0, self.deadline - time.monotonic()))
        return min(left) if left else None

    def line(self) -> str:
        budget = f"/{self.max_examples}" if self.max_examples and self.max_examples < 10**8 else ""
        examples = min(self.examples, self.max_examples) if budget and not self.shrinking else self.examples
        state = (f"shrinking {self.failing_examples} failing examples" if self.shrinking
                 else f"{examples}{budget} examples")
        eta = self.eta
        return (f"  ... {self.machine} vs {self.target}: {state}, {self.steps:,} steps, "
                f"{self.steps_per_second:,.0f} steps/s, {self.seconds:.0f}s"
                + (f", ETA {eta:.0f}s" if eta is not None else ""))


def print_progress(progress: Progress) -> None:
    """Plain progress: one line per report, on stderr (a log file or a CI console)."""
    if not progress.done:
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


class StopRun(KeyboardInterrupt):
    """Raised at a safe point (between two steps) to end a run early: ``why`` says why.

    A :class:`KeyboardInterrupt` subclass on purpose: Hypothesis treats ``KeyboardInterrupt`` as
    "stop now", neither shrinking it nor saving it to the example database as a failure.
    """

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


#: Set by the SIGINT handler (:func:`interrupt_handler`); every machine checks it between steps.
INTERRUPT = threading.Event()


@contextlib.contextmanager
def interrupt_handler():
    """While active, Ctrl-C sets :data:`INTERRUPT` instead of raising; a second Ctrl-C raises at once.

    Why not let ``KeyboardInterrupt`` propagate: Python raises it wherever the main thread happens
    to be, and Hypothesis runs code (its GC-time callback among others) where an exception is
    printed and ignored, so a run could survive Ctrl-C and later report ``passed``.  A flag checked
    at a safe point, between two steps of a machine, stops every run, every time.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if INTERRUPT.is_set():  # a second Ctrl-C: the user insists (a step may be stuck)
            raise KeyboardInterrupt
        INTERRUPT.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@attrs.define
class _Budget:
    """When one machine's run must stop: generation ends at ``deadline``, shrinking
    ``max_shrink_seconds`` after the first failure (and never after ``hard_deadline``)."""

    deadline: float | None = None
    hard_deadline: float | None = None
    max_shrink_seconds: float | None = None
    stop: threading.Event | None = None
    first_failure: float | None = None

    def check(self, failing: int) -> None:
        now = time.monotonic()
        if self.stop is not None and self.stop.is_set():
            raise StopRun("interrupted")
        if failing:
            if self.first_failure is None:
                self.first_failure = now
            if self.max_shrink_seconds is not None and now - self.first_failure > self.max_shrink_seconds:
                raise StopRun("shrink budget")
            if self.hard_deadline is not None and now > self.hard_deadline:
                raise StopRun("shrink budget")
        elif self.deadline is not None and now > self.deadline:
            raise StopRun("time budget")


def _instrument(machine: type[base.DifferentialMachine], budget: _Budget,
                counters: Counter | None) -> type[base.DifferentialMachine]:
    """A subclass that remembers its last instance, counts failing examples, keeps the shortest
    divergence seen, checks the budget and the interrupt flag between steps, and (``counters``)
    counts rules, steps and errors, also as Hypothesis ``event()``\\ s.

    Hypothesis runs the minimal failing example last, so after a failure ``_kvspec_last`` holds the
    machine whose ``run.steps`` are the shrunk steps — what an *error* trace records.  When the
    shrink budget ends the run first, ``_kvspec_best`` is the smallest divergence seen so far.
    """

    class Instrumented(machine):  # type: ignore[misc, valid-type]
        _kvspec_last: Any = None
        _kvspec_failing = 0
        _kvspec_generated = 0  # examples before the first failure (shrink attempts come after)
        _kvspec_best: Divergence | None = None

        def __init__(self) -> None:
            budget.check(type(self)._kvspec_failing)
            super().__init__()
            if not type(self)._kvspec_failing:
                type(self)._kvspec_generated += 1
            type(self)._kvspec_last = self
            self._kvspec_times: dict[str, float] = {}
            apply = self.run.apply

            def counted(step):
                cls = type(self)
                budget.check(cls._kvspec_failing)
                try:
                    return apply(step)
                except Divergence as divergence:
                    cls._kvspec_record(divergence)
                    raise
                except KvSpecError as error:
                    if counters is not None:
                        kind = f"error: {type(error).__name__}"
                        counters[kind] += 1
                        event(kind)
                    raise

            self.run.apply = counted  # type: ignore[method-assign]

        def check_invariants(self, settings, output, runtimes) -> None:
            if counters is not None:
                for label, spent in runtimes.items():
                    if label.startswith("execute:rule:") and spent != self._kvspec_times.get(label):
                        self._kvspec_times[label] = spent
                        name = f"rule: {label[len('execute:rule:'):]}"
                        counters[name] += 1
                        event(name)
            budget.check(type(self)._kvspec_failing)
            try:
                super().check_invariants(settings, output, runtimes)
            except Divergence as divergence:  # a machine's own invariant (a router's view, say)
                type(self)._kvspec_record(divergence)
                raise

        @classmethod
        def _kvspec_record(cls, divergence: Divergence) -> None:
            """Count a failing example (which starts the shrink budget) and keep the shortest divergence."""
            cls._kvspec_failing += 1
            best = cls._kvspec_best
            if best is None or divergence.index < best.index:
                cls._kvspec_best = divergence
            if counters is not None:
                counters["outcome: divergence"] += 1

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
        try:
            self._on_progress(attrs.evolve(self._snapshot(), done=True))
        except Exception:  # noqa: BLE001 - progress must never break a run
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._on_progress(self._snapshot())
            except Exception:  # noqa: BLE001 - progress must never break a run
                pass


def new_seed() -> int:
    """A fresh random seed for a run that was given none (printed and recorded, so it can be re-run)."""
    return random.SystemRandom().randrange(2**32)


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
    seconds: float | None = None,
    max_steps: int | None = None,
    max_shrink_seconds: float | None = None,
    stats: bool = False,
    stop: threading.Event | None = INTERRUPT,
) -> MachineResult:
    """Run ``spec`` against ``target``; never raises for a failure, returns it.

    ``shrink=False`` skips Hypothesis's shrink phase: enough to learn *whether* a target diverges
    (the quality tests), much cheaper than a minimal counterexample.

    ``minimize``: after Hypothesis's shrinking, delete steps the divergence does not need
    (:mod:`kvspec.stateful.traces.minimize`).

    ``database``: ``"default"`` keeps the profile's setting, otherwise an
    :class:`~hypothesis.database.ExampleDatabase`, ``None``, or a ``--database`` string for
    :func:`make_database`.

    Budgets: ``seconds`` ends generation after that much wall time (a pass, status ``passed``,
    with ``reason`` saying so); ``max_shrink_seconds`` ends shrinking that long after the first
    failure (the smallest divergence seen so far is reported); ``max_steps`` caps the steps per
    example.  ``stop`` (default: the Ctrl-C flag) ends the run at the next step with status
    ``interrupted``.

    ``seed``: given, the run is random with that seed; not given under a randomized profile, a
    fresh seed is drawn, used and recorded (``MachineResult.seed``, the trace); a derandomized
    profile (``ci``) keeps its fixed examples and records ``seed: null``.

    ``stats``: count rules, steps and errors (:attr:`MachineResult.stats`; also Hypothesis
    ``event()``\\ s, shown by ``pytest --hypothesis-show-statistics``).
    """
    target = resolve(target)
    skip = spec.applies_to(target)
    if skip:
        return MachineResult(spec.name, target.name, "skipped", reason=skip)
    from kvspec.stateful.machines.interface import preflight

    problems = preflight(spec, target)
    if problems:
        return MachineResult(spec.name, target.name, "adapter", reason="; ".join(problems), crashed=True)
    profile = profile or profiles.default_profile()
    base_settings = profiles.get(profile)
    if seed is None and not base_settings.derandomize:
        seed = new_seed()
    overrides: dict[str, Any] = {}
    if max_examples is not None:
        overrides["max_examples"] = max_examples
    if max_steps is not None:
        overrides["stateful_step_count"] = max_steps
    if seed is not None:
        overrides["derandomize"] = False
    if not shrink:
        overrides["phases"] = [p for p in base_settings.phases if p is not Phase.shrink]
    if database != "default":
        db = make_database(database) if isinstance(database, str) else database
        if not (base_settings.derandomize and seed is None):
            overrides["database"] = db
    settings = Settings(base_settings, **overrides)
    started_wall = time.monotonic()
    deadline = started_wall + seconds if seconds is not None else None
    budget = _Budget(deadline, deadline, max_shrink_seconds, stop)
    counters: Counter | None = Counter() if stats else None
    machine = _instrument(spec.build(target), budget, counters)
    if seed is not None:
        machine = hypothesis_seed(seed)(machine)
    started = time.perf_counter()
    status, reason, trace = "passed", "", None
    crashed = False
    hypothesis_stats: dict[str, Any] = {}

    def snapshot() -> Progress:
        return Progress(spec.name, target.name, machine._kvspec_generated, machine.stats.steps,
                        time.perf_counter() - started, machine._kvspec_failing, settings.max_examples,
                        deadline)

    from kvspec.stateful.traces.schema import trace_from_divergence, trace_from_error

    def divergence_trace(divergence: Divergence) -> dict[str, Any]:
        found = trace_from_divergence(divergence, spec=spec, target=target, profile=profile, seed=seed,
                                      max_examples=max_examples)
        return _minimized(found, spec, target, stop, deadline) if minimize else found

    reporter = _Reporter(snapshot, on_progress or print_progress, progress_every) if progress_every else None
    try:
        if reporter:
            reporter.__enter__()
        with collector.with_value(hypothesis_stats.update):
            run_state_machine_as_test(machine, settings=settings)
    except StopRun as stopped:
        best = machine._kvspec_best
        if stopped.why == "interrupted":
            status, reason = "interrupted", "stopped by Ctrl-C"
        elif best is None and not machine._kvspec_failing:
            reason = f"{stopped.why} of {seconds:.1f}s used" if seconds is not None else stopped.why
        if best is not None:
            status = "failed" if status != "interrupted" else status
            reason = best.summary if status == "failed" else f"{reason}; shrinking was under way: {best.summary}"
            trace = divergence_trace(best)
            crashed = _is_crash(best)
        elif machine._kvspec_failing and status != "interrupted":
            status, reason = "error", f"{stopped.why} ended shrinking of a failure outside the steps"
    except Divergence as divergence:
        status, reason = "failed", divergence.summary
        crashed = _is_crash(divergence)
        trace = divergence_trace(divergence)
    except Exception as exc:  # noqa: BLE001 - a crash in an invariant or rule is reported, not hidden
        status, reason = "error", f"{type(exc).__name__}: {exc}".splitlines()[0]
        crashed = not isinstance(exc, AssertionError)
        last = machine._kvspec_last
        if last is not None and last.run.steps:
            trace = trace_from_error(exc, last.run.steps, spec=spec, target=target, profile=profile, seed=seed,
                                     max_examples=max_examples)
    finally:
        if reporter:
            reporter.__exit__()
    elapsed = time.perf_counter() - started
    run_stats = machine.stats
    finding = spec.known_failures.get(target.name)
    if finding is not None and status == "failed":
        status, reason = "known", f"known finding {finding} (docs/findings.md): {reason}"
    # examples generated (never above the budget: Hypothesis also runs invalid and shrinking ones)
    examples = min(machine._kvspec_generated, settings.max_examples)
    result = MachineResult(spec.name, target.name, status, examples, run_stats.steps, elapsed, reason,
                           trace, failing_examples=machine._kvspec_failing, seed=seed, crashed=crashed,
                           max_examples=settings.max_examples,
                           shrink_examples=max(0, run_stats.examples - machine._kvspec_generated))
    if stats:
        result.stats = _stats(counters or Counter(), run_stats, hypothesis_stats)
    return result


def _is_crash(divergence: Divergence) -> bool:
    """The target failed with a non-kvspec exception (an adapter or engine crash, not a wrong answer)."""
    return bool(divergence.actual.error and divergence.actual.error.startswith("crash:"))


def _stats(counters: Counter, run: base.RunStats, hypothesis_stats: dict[str, Any]) -> dict[str, Any]:
    """``--stats``: rules fired, errors exercised, model vs target time, the invalid-draw share."""
    cases = hypothesis_stats.get("generate-phase", {}).get("test-cases", [])
    invalid = sum(case.get("status") == "invalid" for case in cases)
    retried = sum(any("to satisfy filter" in e for e in case.get("events", ())) for case in cases)
    return {
        "rules": {k[len("rule: "):]: v for k, v in sorted(counters.items()) if k.startswith("rule: ")},
        "errors": {k[len("error: "):]: v for k, v in sorted(counters.items()) if k.startswith("error: ")},
        "divergences": counters.get("outcome: divergence", 0),
        "model_seconds": round(run.model_seconds, 3),
        "target_seconds": round(run.target_seconds, 3),
        "generated_examples": len(cases),
        "invalid_examples": invalid,
        "examples_with_retried_draws": retried,
        "rule_draws": run.rule_choices.draws,
        "swarm_fallbacks": run.rule_choices.swarm_fallbacks,
    }


def _minimized(trace: dict[str, Any], spec: base.MachineSpec, target: Target,
               stop: threading.Event | None = None, deadline: float | None = None) -> dict[str, Any]:
    from kvspec.stateful.traces.minimize import minimize_trace
    from kvspec.stateful.traces.schema import validate_trace

    def should_stop() -> bool:
        return (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() > deadline)
    try:
        return dict(minimize_trace(validate_trace(trace), target, spec=spec, should_stop=should_stop).data)
    except (KvSpecError, RecursionError):  # the unminimized trace is still a good trace
        return trace


def _check_by_name(name: str, target: str, kwargs: dict[str, Any]) -> MachineResult:
    matches = [s for s in find_machines([name]) if s.name == name]
    if not matches:
        return MachineResult(name, target, "error", reason=f"machine {name!r} not found in worker process")
    with interrupt_handler():  # a worker process: Ctrl-C reaches it too; stop at its next step
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
    duration: float | None = None,
    max_steps: int | None = None,
    max_shrink_seconds: float | None = None,
    shrink: bool = True,
    stats: bool = False,
    stop: threading.Event | None = INTERRUPT,
) -> list[MachineResult]:
    """Run every selected machine against ``target`` and return the results in machine order.

    With ``jobs > 1`` machines run in worker processes; ``database`` must then be a string (it is
    rebuilt in each worker), and progress lines are printed by the workers themselves.

    ``duration`` is the wall-time budget of the whole call, spread over the machines: each
    machine that applies gets an equal share of what is left when it starts (with ``jobs``
    processes, ``jobs`` shares run at once), shrinking and minimizing included, so the call ends
    close to ``duration`` seconds.  A machine never started because ``stop`` was set is left out
    of the results (the table shows what ran).
    """
    specs = find_machines(machines)
    common: dict[str, Any] = dict(profile=profile, max_examples=max_examples, seed=seed, database=database,
                                  progress_every=progress_every, minimize=minimize, max_steps=max_steps,
                                  max_shrink_seconds=max_shrink_seconds, shrink=shrink, stats=stats)
    results: dict[str, MachineResult] = {}
    end = time.monotonic() + duration if duration is not None else None
    resolved = resolve(target)
    runnable = [s for s in specs if not s.applies_to(resolved)]

    def share(remaining_machines: int, parallel: int) -> float | None:
        if end is None:
            return None
        rounds = max(1, -(-remaining_machines // parallel))
        return max(0.0, (end - time.monotonic()) / rounds)

    if jobs <= 1 or len(specs) <= 1:
        left = len(runnable)
        for spec in specs:
            if stop is not None and stop.is_set():
                break
            seconds = None
            if spec in runnable:
                seconds = share(left, 1)
                left -= 1
            result = check_machine(spec, resolved, on_progress=on_progress, seconds=seconds, stop=stop, **common)
            results[spec.name] = result
            if on_result:
                on_result(result)
    else:
        if not isinstance(database, str):
            raise TypeError("with jobs > 1, database must be a --database string")
        workers = min(jobs, len(specs))
        seconds = share(len(runnable), workers)
        kwargs = {**common, "seconds": seconds}
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_check_by_name, s.name, target, kwargs): s.name for s in specs}
            for future in concurrent.futures.as_completed(futures):
                name = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - a worker died (e.g. out of memory)
                    result = MachineResult(name, str(target), "error", reason=f"worker failed: {exc!r}", crashed=True)
                results[name] = result
                if on_result:
                    on_result(result)
    return [results[s.name] for s in specs if s.name in results]


def cpu_count() -> int:
    """CPUs this process may use (for ``-j 0``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1

