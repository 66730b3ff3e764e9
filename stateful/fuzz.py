"""``kvspec check --fuzz``: the machines' own rules, driven by a seeded PRNG instead of Hypothesis.

``kvspec check`` spends most of its time inside Hypothesis's engine (the bookkeeping that lets it
shrink); the fuzz mode drops the engine, not the machines.  :class:`FuzzRules` reads a machine
class's rules, initializers, preconditions and invariants where Hypothesis registered them
(``setup_state()``), so a rule added to a machine is fuzzed without any change here; arguments are
drawn from the rules' own strategies, compiled to plain PRNG draws by
:mod:`kvspec.stateful.engine.draws`; the rule bodies run as they are.

One *run* is what Hypothesis calls an example: a fresh machine, its initializers in a random order,
then ``run_length`` rules, each chosen uniformly among the enabled rules whose preconditions hold.
Like Hypothesis it switches a random subset of rules off per run (swarm testing: each rule is off
with a probability drawn per run).  Runs repeat until the budget (steps or seconds) is spent or a
run fails.  Nothing is shrunk while fuzzing.

What is cheaper than ``kvspec check`` besides the engine (each a measured cost, see
``kvspec bench fuzz``):

* observation: the machines run with ``observe="checkpoints"``
  (:class:`~kvspec.stateful.engine.differential.Differential`): values, errors and ``drain_*``
  events after every step, the state observers every ``checkpoint_every`` steps of a subject and at
  the end of every run; a machine that reads observations of earlier steps (the tracker machine's
  stream invariant) gets those observers read eagerly, learnt on its first such read
  (:class:`~kvspec.stateful.engine.differential.StaleObservation`, the run is redone); a
  subject's step is two calls on objects looked up once per subject, its drains read through
  methods bound once (the differential's *lane*);
* invariants run after every ``invariants_every``-th rule and at the end of every run;
* a rule's arguments are drawn in a dict display, not a comprehension (:func:`_plain_caller`);
* garbage is collected between runs, not in the middle of one (:class:`_RunScopedGC`).

On a failure the run's steps are replayed with every observer compared after every step — the
divergence ``kvspec check`` would have seen first, at its exact step — and the result goes
through kvspec's replay-checked minimizer (:mod:`kvspec.stateful.traces.minimize`): the trace has
the schema ``kvspec check`` writes, its ``seed`` is the failing run's and its ``command`` re-runs
exactly that run first.  A failure no replay reproduces (an invariant, a crash in rule code) is an
``error`` trace of the run's steps.

Reproducibility: the runs of a machine use ``Random(s_0)``, ``Random(s_1)``, ... where ``s_0`` is
the seed and the later ones are drawn from ``Random(seed)``, so ``--seed <a failing run's seed>``
replays that run first.

>>> from kvspec.stateful.engine.registry import find_machines
>>> result = fuzz_machine(find_machines(["radix"])[0], "impl", steps=300, seed=1)
>>> result.status, result.steps >= 300, result.rule_counts["store"] > 0
('passed', True, True)
"""

from __future__ import annotations

import concurrent.futures
import gc
import random
import shlex
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from hypothesis.errors import UnsatisfiedAssumption
from hypothesis.stateful import Bundle

from kvspec.errors import KvSpecError
from kvspec.stateful.engine import machine as base
from kvspec.stateful.engine.differential import Divergence, StaleObservation, replay
from kvspec.stateful.engine.draws import drawer
from kvspec.stateful.engine.registry import find_machines
from kvspec.stateful.runner import MachineResult, Progress, print_progress
from kvspec.targets import Target, resolve

__all__ = ["DEFAULT_STEPS", "FuzzResult", "FuzzRules", "fuzz", "fuzz_command", "fuzz_machine"]

#: steps per machine when neither a step nor a time budget is given
DEFAULT_STEPS = 20_000
#: rules per run (Hypothesis's ``stateful_step_count`` is 50 under ``ci``, 120 under ``nightly``)
DEFAULT_RUN_LENGTH = 100
#: state observers are compared at least every this many steps of a subject
DEFAULT_CHECKPOINT_EVERY = 16
#: invariants run after every this many rules (and at the end of every run); 32 rather than 16:
#: 3-5% more steps/s on the manager machines, and every self-test mutant is caught within as
#: many steps over seeds 0-5 (``kvspec bench fuzz`` table 2)
DEFAULT_INVARIANTS_EVERY = 32


@attrs.define
class FuzzResult(MachineResult):
    """A :class:`~kvspec.stateful.runner.MachineResult` with what only a fuzz run knows.

    ``examples`` counts runs; ``failing_seed`` re-runs the failing run first (``--seed``);
    ``first_failure_seconds`` is when the failure was seen (before replay and minimization);
    ``rule_counts`` how often each rule ran (coverage); ``cpu_seconds`` the process time spent.
    """

    seed: int = 0
    run_length: int = DEFAULT_RUN_LENGTH
    failing_seed: int | None = None
    first_failure_seconds: float | None = None
    first_failure_steps: int | None = None
    rule_counts: dict[str, int] = attrs.field(factory=dict)
    cpu_seconds: float = 0.0
    discarded: int = 0


# -- a machine class's rules, compiled once ------------------------------------------------------


@attrs.frozen
class _Rule:
    name: str
    function: Callable[..., Any]
    arguments: tuple[tuple[str, Any], ...]  # (name, compiled draw or Bundle)
    preconditions: tuple[Callable[[Any], bool], ...]
    bundles: tuple[str, ...]
    targets: tuple[str, ...]
    #: ``call(machine, rng)``: the rule with freshly drawn arguments (see :func:`_caller`)
    call: Callable[[Any, random.Random], None] = attrs.field(eq=False, repr=False)
    #: ``guard(machine)``: whether it applies (see :func:`_guard`); ``None`` when it always does
    guard: Callable[[Any], bool] | None = attrs.field(eq=False, repr=False)

    def applies(self, machine: Any) -> bool:
        """Every bundle it reads is non-empty and every precondition holds."""
        return self.guard is None or self.guard(machine)


def _compile_rule(rule: Any) -> _Rule:
    arguments = tuple((k, v if isinstance(v, Bundle) else drawer(v)) for k, v in rule.arguments_strategies.items())
    bundles, targets, preconditions = tuple(b.name for b in rule.bundles), tuple(rule.targets), tuple(rule.preconditions)
    return _Rule(rule.function.__name__, rule.function, arguments, preconditions, bundles, targets,
                 call=_caller(rule.function, arguments, targets), guard=_guard(bundles, preconditions))


def _guard(bundles: tuple[str, ...], preconditions: tuple[Callable[[Any], bool], ...]) -> Callable[[Any], bool] | None:
    """Whether a rule applies: its bundles are non-empty and its preconditions hold (a single
    precondition is its own guard; ``None``: no bundle, no precondition, it always applies)."""
    if not bundles and not preconditions:
        return None
    if not bundles and len(preconditions) == 1:
        return preconditions[0]

    def guard(machine: Any) -> bool:
        return all(machine.bundle(name) for name in bundles) and all(p(machine) for p in preconditions)
    return guard


def _caller(function: Callable[..., Any], arguments: tuple[tuple[str, Any], ...],
            targets: tuple[str, ...]) -> Callable[[Any, random.Random], None]:
    """``call(machine, rng)``: ``function`` with freshly drawn arguments (compiled once per rule;
    a rule without bundles draws its arguments in a dict display, see :func:`_plain_caller`)."""
    if not any(isinstance(draw, Bundle) for _, draw in arguments) and not targets:
        return _plain_caller(function, arguments)

    def call_with_bundles(machine: Any, rng: random.Random) -> None:
        kwargs = {}
        for key, draw in arguments:
            if isinstance(draw, Bundle):
                refs = machine.bundle(draw.name)
                i = rng.randrange(len(refs))
                ref = refs.pop(i) if draw.consume else refs[i]
                kwargs[key] = machine.names_to_values[ref.name]
            else:
                kwargs[key] = draw(rng)
        result = function(machine, **kwargs)
        if targets:
            machine._add_results_to_targets(targets, [result])
    return call_with_bundles


def _plain_caller(function: Callable[..., Any],
                  arguments: tuple[tuple[str, Any], ...]) -> Callable[[Any, random.Random], None]:
    """``call(machine, rng)`` for a rule without bundles: up to four arguments are drawn in a dict
    display, in order (a comprehension is a function call of its own: 0.4 us a rule, about 1% of
    the manager machine's steps/s); more in a comprehension."""
    n = len(arguments)
    if n == 0:
        def call0(machine: Any, rng: random.Random) -> None:
            function(machine)
        return call0
    if n == 1:
        ((k1, d1),) = arguments

        def call1(machine: Any, rng: random.Random) -> None:
            function(machine, **{k1: d1(rng)})
        return call1
    if n == 2:
        (k1, d1), (k2, d2) = arguments

        def call2(machine: Any, rng: random.Random) -> None:
            function(machine, **{k1: d1(rng), k2: d2(rng)})
        return call2
    if n == 3:
        (k1, d1), (k2, d2), (k3, d3) = arguments

        def call3(machine: Any, rng: random.Random) -> None:
            function(machine, **{k1: d1(rng), k2: d2(rng), k3: d3(rng)})
        return call3
    if n == 4:
        (k1, d1), (k2, d2), (k3, d3), (k4, d4) = arguments

        def call4(machine: Any, rng: random.Random) -> None:
            function(machine, **{k1: d1(rng), k2: d2(rng), k3: d3(rng), k4: d4(rng)})
        return call4

    def call(machine: Any, rng: random.Random) -> None:
        function(machine, **{key: draw(rng) for key, draw in arguments})
    return call


class FuzzRules:
    """The rules, initializers and invariants of a machine class as Hypothesis registered them.

    Nothing is copied by hand: ``setup_state()`` is what Hypothesis itself reads, so a new rule,
    precondition or strategy in a machine is fuzzed as soon as it exists.  O(rules) to build.
    """

    def __init__(self, machine: type[base.DifferentialMachine]) -> None:
        state = machine.setup_state()
        self.rules = sorted((_compile_rule(r) for r in state.rules), key=lambda r: r.name)
        self.initializers = sorted((_compile_rule(r) for r in state.initializers), key=lambda r: r.name)
        self.invariants = list(state.invariants)

    @property
    def names(self) -> list[str]:
        """Rule names, each once (a weighted rule is entered several times under one name)."""
        return list(dict.fromkeys(r.name for r in self.rules))

    # -- one run --------------------------------------------------------------------------------

    def swarm(self, rng: random.Random) -> list[_Rule]:
        """This run's enabled rules: each rule *name* is off with probability ``p``, ``p`` uniform
        per run (Hypothesis's feature flags; the copies of a weighted rule go together); if that
        leaves none, all of them."""
        p_off = rng.randrange(255) / 255
        on = {name for name in self.names if rng.random() >= p_off}
        return [r for r in self.rules if r.name in on] or list(self.rules)

    def choose(self, machine: Any, enabled: list[_Rule], rng: random.Random, by_rejection: bool = False) -> _Rule:
        """Uniform among the enabled rules whose preconditions hold; among all applicable rules
        if no enabled one applies.

        ``by_rejection`` (only when some enabled rule is unguarded: no precondition, no bundle):
        draw an enabled rule until one applies — uniform among the applicable ones, and it ends at
        the latest at an unguarded rule, after ``len(enabled) / len(unguarded)`` draws on average.
        Otherwise every precondition is evaluated once, O(rules).  Indices come from
        ``rng.random()`` (a third of ``randrange``'s cost; its bias is below 2**-40 for these sizes)."""
        n, uniform = len(enabled), rng.random
        if by_rejection:
            while True:
                rule = enabled[int(uniform() * n)]
                guard = rule.guard
                if guard is None or guard(machine):
                    return rule
        for candidates in (enabled, self.rules):
            applicable = [rule for rule in candidates if rule.applies(machine)]
            if applicable:
                return applicable[int(uniform() * len(applicable))]
        raise AssertionError(f"no rule of {type(machine).__name__} has a true precondition")

    @staticmethod
    def call(machine: Any, rule: _Rule, rng: random.Random) -> None:
        """Run ``rule`` on ``machine`` with arguments drawn from ``rng``."""
        rule.call(machine, rng)

    def check_invariants(self, machine: Any, during_init: bool = False) -> None:
        for inv in self.invariants:
            if during_init and not inv.check_during_init:
                continue
            if not inv.preconditions or all(p(machine) for p in inv.preconditions):
                inv.function(machine)

    def run(self, machine: Any, rng: random.Random, length: int, counts: Counter, invariants_every: int = 1) -> None:
        """One run: initializers in a random order, then ``length`` rules, the invariants after
        every ``invariants_every``-th rule and at the end; state compared at the end."""
        enabled = self.swarm(rng)
        by_rejection = any(rule.guard is None for rule in enabled)
        self.check_invariants(machine, during_init=True)
        initializers = list(self.initializers)
        rng.shuffle(initializers)
        for i, rule in enumerate(initializers):
            rule.call(machine, rng)
            counts[rule.name] += 1
            self.check_invariants(machine, during_init=i < len(initializers) - 1)
        choose, done = self.choose, []  # rules that ran, counted once per run
        try:
            for i in range(1, length + 1):
                rule = choose(machine, enabled, rng, by_rejection)
                rule.call(machine, rng)
                done.append(rule.name)
                if i % invariants_every == 0 or i == length:
                    self.check_invariants(machine)
        finally:
            counts.update(done)
        machine.run.checkpoint()


# -- a machine against a target --------------------------------------------------------------------


class _RunScopedGC:
    """Garbage collection once per run instead of whenever the allocator counts enough objects.

    A run's objects live for milliseconds and many are cycles (a machine and its rules); collected
    mid-run they survive into the old generations, and every full collection then walks all of
    Hypothesis and kvspec as well: under the default policy collections took 17-20% of the fuzz
    mode's time (radix, manager), 1-2 ms per run here.  So the automatic collector is off while
    fuzzing, the youngest generation is collected between runs (O(objects the run left behind)),
    the middle one every 10 runs and the whole heap every :attr:`FULL_EVERY` runs; the previous
    setting is restored at the end.
    """

    FULL_EVERY = 500
    enabled = True  # class switch for the benchmark's comparison

    def __init__(self) -> None:
        self.was_enabled = gc.isenabled()
        self.runs = 0
        if self.enabled:
            gc.disable()

    def between_runs(self) -> None:
        self.runs += 1
        if self.enabled and self.runs > 1:
            gc.collect(2 if self.runs % self.FULL_EVERY == 0 else 1 if self.runs % 10 == 0 else 0)

    def close(self) -> None:
        if self.was_enabled:
            gc.enable()


def fuzz_command(machine: str, target: str, seed: int, run_length: int = DEFAULT_RUN_LENGTH) -> str:
    """The command that re-runs the run of ``seed`` first."""
    parts = ["kvspec", "check", "--fuzz", "--target", target, "--machine", machine, "--seed", str(seed)]
    if run_length != DEFAULT_RUN_LENGTH:
        parts += ["--fuzz-run-length", str(run_length)]
    return shlex.join(parts)


def _fuzzing(machine: type[base.DifferentialMachine], checkpoint_every: int,
             eager: frozenset[str] = frozenset()) -> type[base.DifferentialMachine]:
    """``machine`` observing at checkpoints; ``eager`` observers are read after every step."""
    options = {"observe": "checkpoints", "checkpoint_every": checkpoint_every, "eager": eager}
    return type(machine.__name__, (machine,), {"run_options": options, "__module__": machine.__module__})


def fuzz_machine(
    spec: base.MachineSpec,
    target: Target | str,
    *,
    steps: int | None = None,
    seconds: float | None = None,
    seed: int | None = None,
    run_length: int = DEFAULT_RUN_LENGTH,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    invariants_every: int = DEFAULT_INVARIANTS_EVERY,
    minimize: bool = True,
    progress_every: float | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> FuzzResult:
    """Fuzz ``spec`` against ``target`` until ``steps`` steps or ``seconds`` seconds are spent
    (:data:`DEFAULT_STEPS` steps when neither is given) or a run fails; never raises for a failure.
    """
    target = resolve(target)
    seed = random.SystemRandom().getrandbits(63) if seed is None else seed
    skip = spec.applies_to(target) or getattr(spec.factory, "fuzz_unsupported", None)
    if skip:
        return FuzzResult(spec.name, target.name, "skipped", reason=skip, seed=seed, run_length=run_length)
    if steps is None and seconds is None:
        steps = DEFAULT_STEPS
    machine_cls = _fuzzing(spec.build(target), checkpoint_every)
    rules = FuzzRules(machine_cls)
    counts: Counter = Counter({name: 0 for name in rules.names})
    seeds = random.Random(seed)
    run_seed = seed
    stats = machine_cls.stats
    started, cpu_started = time.perf_counter(), time.process_time()
    next_report = started + progress_every if progress_every else None
    status, reason, trace, failing = "passed", "", None, None
    first_seconds = first_steps = None
    discarded = 0

    def spent() -> bool:
        return ((steps is not None and stats.steps >= steps)
                or (seconds is not None and time.perf_counter() - started >= seconds))

    collector = _RunScopedGC()
    try:
        while not spent():
            collector.between_runs()
            machine = machine_cls()
            try:
                rules.run(machine, random.Random(run_seed), run_length, counts, invariants_every)
            except UnsatisfiedAssumption:
                discarded += 1
            except StaleObservation as stale:
                # the machine reads this observer of earlier steps: observe it every step, redo the run
                eager = frozenset(machine_cls.run_options["eager"] | {stale.name})
                machine_cls = _fuzzing(machine_cls, checkpoint_every, eager)
                continue
            except Exception as exc:  # noqa: BLE001 - a failure is reported, not raised
                first_seconds, first_steps = time.perf_counter() - started, stats.steps + len(machine.run.steps)
                failing = run_seed
                status, reason, trace = _failure(exc, machine, spec, target, run_seed, run_length, minimize)
                break
            finally:
                machine.teardown()
                # Hypothesis's machine and its rule strategy refer to each other: emptying the
                # machine frees the run's steps and objects by reference counting, not by a collection
                machine.__dict__.clear()
                machine = None
            if next_report is not None and time.perf_counter() >= next_report:
                next_report += progress_every
                (on_progress or print_progress)(Progress(spec.name, target.name, stats.examples, stats.steps,
                                                         time.perf_counter() - started, 0))
            run_seed = seeds.getrandbits(63)
    finally:
        collector.close()
    finding = spec.known_failures.get(target.name)
    if finding is not None and status == "failed":
        status, reason = "known", f"known finding {finding} (docs/findings.md): {reason}"
    return FuzzResult(
        spec.name, target.name, status, stats.examples, stats.steps, time.perf_counter() - started, reason, trace,
        failing_examples=int(failing is not None), seed=seed, run_length=run_length, failing_seed=failing,
        first_failure_seconds=first_seconds, first_failure_steps=first_steps, rule_counts=dict(counts),
        cpu_seconds=time.process_time() - cpu_started, discarded=discarded,
    )


def _failure(exc: BaseException, machine: Any, spec: base.MachineSpec, target: Target, run_seed: int,
             run_length: int, minimize: bool) -> tuple[str, str, dict[str, Any]]:
    """Status, reason and trace of a failed run.

    The run's steps are replayed first with every observer compared after every step: if that
    diverges, the failure is the divergence ``kvspec check`` would have seen first (even when an
    invariant noticed the damage before a checkpoint did), at its exact step, minimized.
    Otherwise a :class:`Divergence` stands as raised, and anything else is an error trace."""
    from kvspec.stateful.traces.schema import trace_from_divergence, trace_from_error

    steps = list(machine.run.steps)
    command = fuzz_command(spec.name, target.name, run_seed, run_length)
    cls = type(machine)
    divergence = replay(steps, cls.model_namespace, cls.target.namespace, observers=cls.observers,
                        compare=cls.compare, partial_errors=cls.partial_errors) if steps else None
    if divergence is None and isinstance(exc, Divergence):
        divergence = exc
    if divergence is None:
        trace = trace_from_error(exc, steps, spec=spec, target=target, profile=None, seed=run_seed)
        trace["command"] = command
        return "error", f"{type(exc).__name__}: {exc}".splitlines()[0], trace
    trace = trace_from_divergence(divergence, spec=spec, target=target, profile=None, seed=run_seed)
    trace["command"] = command
    if minimize:
        trace = _minimized(trace, spec, target)
    return "failed", divergence.summary, trace


def _minimized(trace: dict[str, Any], spec: base.MachineSpec, target: Target) -> dict[str, Any]:
    from kvspec.stateful.traces.minimize import minimize_trace
    from kvspec.stateful.traces.schema import validate_trace

    try:
        return dict(minimize_trace(validate_trace(trace), target, spec=spec).data)
    except (KvSpecError, RecursionError):  # the unminimized trace is still a good trace
        return trace


# -- many machines ---------------------------------------------------------------------------------


def _fuzz_by_name(name: str, target: str, kwargs: dict[str, Any]) -> FuzzResult:
    matches = [s for s in find_machines([name]) if s.name == name]
    if not matches:
        return FuzzResult(name, target, "error", reason=f"machine {name!r} not found in worker process")
    return fuzz_machine(matches[0], target, **kwargs)


def fuzz(
    target: str,
    machines: Sequence[str] | None = None,
    *,
    steps: int | None = None,
    seconds: float | None = None,
    seed: int | None = None,
    run_length: int = DEFAULT_RUN_LENGTH,
    jobs: int = 1,
    minimize: bool = True,
    progress_every: float | None = None,
    on_result: Callable[[MachineResult], None] | None = None,
) -> list[FuzzResult]:
    """Fuzz every selected machine against ``target`` (the budget is per machine); results in
    machine order.  One seed for all machines (drawn when ``None``), so one ``--seed`` reproduces."""
    seed = random.SystemRandom().getrandbits(63) if seed is None else seed
    specs = find_machines(machines)
    kwargs: dict[str, Any] = dict(steps=steps, seconds=seconds, seed=seed, run_length=run_length,
                                  minimize=minimize, progress_every=progress_every)
    results: dict[str, FuzzResult] = {}
    if jobs <= 1 or len(specs) <= 1:
        for spec in specs:
            results[spec.name] = fuzz_machine(spec, target, **kwargs)
            if on_result:
                on_result(results[spec.name])
    else:
        with concurrent.futures.ProcessPoolExecutor(max_workers=min(jobs, len(specs))) as pool:
            futures = {pool.submit(_fuzz_by_name, s.name, target, kwargs): s.name for s in specs}
            for future in concurrent.futures.as_completed(futures):
                name = futures[future]
                try:
                    results[name] = future.result()
                except Exception as exc:  # noqa: BLE001 - a worker died (e.g. out of memory)
                    results[name] = FuzzResult(name, str(target), "error", reason=f"worker failed: {exc!r}")
                if on_result:
                    on_result(results[name])
    return [results[s.name] for s in specs]
