"""Replay a trace: re-run its steps, deterministically, on the model and a target.

``kvspec replay TRACE [--target T]`` is the maintainer's loop: it exits non-zero while the bug is
present and zero once it is fixed.  No Hypothesis is involved: the trace's steps are applied one by
one through a :class:`~kvspec.stateful.engine.differential.Differential` configured exactly as the
machine that found them (its observers, comparator and partial-effect errors), looked up by name and
built for the target.

What replay checks: every step's return value or error and every observer after it — the same
comparisons the machine made.  What it cannot check: assertions a machine makes in its own rule or
invariant code beyond the steps.  For a trace of kind ``error`` (a failure outside the steps)
replay additionally runs the target objects' ``_check()`` (kvspec's structural invariants) after
every step, which is where such failures come from in kvspec's own implementation.

A trace is untrusted input.  Before running anything, :func:`prepare` checks that every step
names a class the machine uses and a public method of the *model's* class with arguments that bind
to its signature, and a target named only in the trace is resolved only if it is registered
(``impl``, ``model``, ``mutant:...``, adapters): kvspec never imports a module because a trace
file says so — pass ``--target`` to choose one explicitly.
"""

from __future__ import annotations

import inspect
import os
import time
import pprint
from collections.abc import Sequence
from typing import Any

import attrs

from kvspec import codec
from kvspec.errors import KvSpecError, TargetError, TraceError
from kvspec.stateful.engine import machine as base
from kvspec.stateful.engine.registry import lookup_machine
from kvspec.stateful.engine.differential import Differential, Divergence, Outcome, Step
from kvspec.stateful.traces.render import step_contract, structural_diff
from kvspec.stateful.traces.schema import (MAX_CONSTRUCTOR_SIZE, SIZE_PARAMETERS, Trace, load_trace, parse_trace,
                                           validate_trace)
from kvspec.targets import Target, is_registered, resolve

__all__ = [
    "REPLAY_SECONDS", "Prepared", "ReplayResult", "StepRecord", "assert_replays_clean", "comparator_of", "flagged_fields",
    "outcome_diff", "outcome_text", "prepare", "render_failure", "render_result", "render_steps", "replay_trace",
    "target_for"
]


def target_for(trace: Trace, override: str | Target | None = None) -> Target:
    """The target to replay against: ``override``, else the recorded one if it is registered."""
    if override is not None:
        return resolve(override)
    name = trace.target
    if is_registered(name):
        return resolve(name)
    raise TargetError(f"the trace was recorded against {name!r}, which is not a registered target; "
                      f"pass --target {name} to import it (kvspec never imports a module named only in a trace)")


@attrs.frozen
class Prepared:
    """A trace checked against a machine and a target, ready to run."""

    trace: Trace
    spec: base.MachineSpec
    machine: type
    target: Target


def prepare(trace: Trace, target: str | Target | None = None, *, spec: base.MachineSpec | None = None) -> Prepared:
    """Look up the machine, resolve the target and check every step is possible (never runs one).

    ``spec`` skips the lookup by name (the caller already holds the machine that wrote the trace).
    """
    spec = spec if spec is not None else lookup_machine(trace.machine)
    resolved = target_for(trace, target)
    skip = spec.applies_to(resolved)
    if skip:
        raise TargetError(f"machine {spec.name} cannot run against {resolved.name}: {skip}")
    machine = spec.build(resolved)
    allowed = set(spec.requires) | set(machine.observers)
    model_ns = machine.model_namespace
    classes: dict[str, type] = {}
    for i, step in enumerate(trace.steps, 1):
        where = f"step {i} ({_short(step.describe())})"
        if step.is_create:
            if step.cls not in allowed:
                raise TraceError(f"{where}: machine {spec.name} does not use class {step.cls!r}")
            model_cls = getattr(model_ns, step.cls, None)
            if not isinstance(model_cls, type):
                raise TraceError(f"{where}: the model has no class {step.cls!r}")
            if not resolved.provides(step.cls):
                raise TargetError(f"{where}: target {resolved.name} does not provide {step.cls}")
            _bind(where, model_cls, step)
            classes[step.subject] = model_cls
            continue
        model_cls = classes[step.subject]  # validate_trace guarantees creation comes first
        attribute = inspect.getattr_static(model_cls, step.method, None)
        if attribute is None or isinstance(attribute, property) or not callable(getattr(model_cls, step.method)):
            raise TraceError(f"{where}: {model_cls.__name__} has no method {step.method!r}")
        _bind(where, getattr(model_cls, step.method), step, bound=True)
    return Prepared(trace, spec, machine, resolved)


def _bind(where: str, function: Any, step: Step, bound: bool = False) -> None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return
    try:
        if bound:
            signature.bind(None, *step.args, **step.kwargs)
        else:
            arguments = signature.bind(*step.args, **step.kwargs).arguments
    except TypeError as exc:
        raise TraceError(f"{where}: arguments do not fit: {exc}") from None
    if not bound:  # a constructor: its size arguments are capped (a trace cannot ask for a huge structure)
        for name in SIZE_PARAMETERS & set(arguments):
            value = arguments[name]
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_CONSTRUCTOR_SIZE:
                raise TraceError(f"{where}: {name}={value} is beyond the trace limit {MAX_CONSTRUCTOR_SIZE}")


def _short(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@attrs.frozen
class StepRecord:
    """One replayed step and what the two sides did."""

    step: Step
    expected: Outcome
    actual: Outcome


@attrs.frozen
class ReplayResult:
    """The outcome of a replay: a divergence, a structural failure, or agreement."""

    prepared: Prepared
    records: tuple[StepRecord, ...]
    divergence: Divergence | None = None
    #: an exception outside the comparisons (``_check()`` of an error trace), with the step index
    failure: str | None = None
    failure_index: int | None = None

    @property
    def reproduced(self) -> bool:
        return self.divergence is not None or self.failure is not None

    @property
    def target(self) -> Target:
        return self.prepared.target


#: Wall-clock seconds one replay may take (``KVSPEC_REPLAY_SECONDS`` overrides); a shrunk trace
#: replays in milliseconds, so a trace that needs longer is refused rather than run for ever.
REPLAY_SECONDS = 120.0


def replay_trace(trace: Trace | str, target: str | Target | None = None, *,
                 spec: base.MachineSpec | None = None, budget: float | None = None) -> ReplayResult:
    """Replay ``trace`` (a :class:`Trace` or a path) against ``target`` (default: the recorded one).

    ``budget`` (seconds, default :data:`REPLAY_SECONDS`) bounds the steps: checked after every
    step, a replay beyond it stops with a :class:`TraceError`.  Resolving the target (importing a
    real engine can take a minute on a loaded machine) is not counted.
    """
    if not isinstance(trace, Trace):
        trace = load_trace(trace)
    if budget is None:
        budget = float(os.environ.get("KVSPEC_REPLAY_SECONDS", REPLAY_SECONDS))
    prepared = prepare(trace, target, spec=spec)  # resolving an engine target imports it: not the steps' time
    run, hook = _differential(prepared)
    deadline = time.monotonic() + budget
    check_structure = trace.kind == "error"
    for i, step in enumerate(trace.steps):
        if time.monotonic() > deadline:
            raise TraceError(f"replay stopped at step {i + 1} of {len(trace.steps)}: over its budget of {budget:g} s "
                             f"(KVSPEC_REPLAY_SECONDS)")
        try:
            if hook is not None:
                hook(step)
            run.apply(step)
        except Divergence as divergence:
            return ReplayResult(prepared, _records(run), divergence)
        except KvSpecError:
            pass  # both sides raised the same error: expected behaviour, the run goes on
        except Exception as exc:  # noqa: BLE001 - the model itself cannot run the step
            raise TraceError(f"step {i + 1} ({_short(step.describe())}) is impossible: the model raises "
                             f"{type(exc).__name__}: {_short(str(exc), 120)}") from None
        if check_structure:
            checker = getattr(run.target_objects.get(step.subject), "_check", None)
            if callable(checker):
                try:
                    checker()
                except Exception as exc:  # noqa: BLE001 - any failure of the target's invariants
                    return ReplayResult(prepared, _records(run), None, f"{type(exc).__name__}: {exc}", i)
    return ReplayResult(prepared, _records(run))


def _differential(prepared: Prepared) -> tuple[Differential, Any]:
    """The machine's own :class:`Differential`, as its ``__init__`` configures it.

    An instance is built (outside Hypothesis; no rule runs) so that a comparator installed per
    instance (``self.run.compare = ...``) is the one used.  A machine whose comparator depends on
    state its rules maintain defines ``replay_step(step)`` to update that state from a step; it is
    called before each step is applied.
    """
    try:
        instance = prepared.machine()
    except Exception:  # noqa: BLE001 - fall back to the class-level configuration
        machine = prepared.machine
        return Differential(machine.model_namespace, prepared.target.namespace, observers=machine.observers,
                            compare=machine.compare, partial_errors=machine.partial_errors), None
    run = instance.run
    if run.steps:  # the constructor itself ran steps: start from a clean recording of the same config
        run = Differential(run.model_ns, run.target_ns, observers=run.observers, compare=run.compare,
                           partial_errors=tuple(run.partial_errors))
        instance.run = run  # hooks read the machine's own run
    hook = getattr(instance, "replay_step", None)
    return run, hook if callable(hook) else None


def comparator_of(prepared: Prepared) -> Any:
    """The comparator replay uses for ``prepared`` (an instance's, if its ``__init__`` sets one)."""
    return _differential(prepared)[0].compare


def _records(run: Differential) -> tuple[StepRecord, ...]:
    return tuple(StepRecord(s, e, a) for s, (e, a) in zip(run.steps, run.outcomes))


# -- rendering ------------------------------------------------------------------------------


def outcome_text(outcome: Outcome) -> str:
    """``-> value`` or ``!! ErrorClass(message)``."""
    if outcome.error is not None:
        return f"!! {outcome.error}" + (f"({_short(outcome.message, 60)!r})" if outcome.message else "")
    return "" if outcome.value is None else f"-> {_short(repr(outcome.value), 80)}"


def _same(a: Any, b: Any) -> bool:
    try:
        return codec.canonical(a) == codec.canonical(b)
    except Exception:  # noqa: BLE001 - unorderable or odd values: fall back to repr
        return repr(a) == repr(b)


def flagged_fields(differences: Sequence[str]) -> tuple[set[str] | None, list[str]]:
    """Which fields a comparator's ``differences`` name, and the differences naming none.

    Comparators word a difference as ``error: ...``, ``return value: ...`` or ``<observer>(): ...``
    (:func:`~kvspec.stateful.engine.differential.exact_compare`); a machine comparing with a tolerance
    (index dumps as multisets) flags only the fields that differ *beyond* it, and the diff shows
    only those.  ``None`` when no difference follows that wording (show every differing field).
    """
    fields: set[str] = set()
    other: list[str] = []
    for text in differences:
        head = text.split(":", 1)[0].strip()
        if head == "error":
            fields.add("raises")
        elif head == "return value":
            fields.add("returns")
        elif head.endswith("()") and head[:-2].isidentifier():
            fields.add(head)
        else:
            other.append(text)
    return (fields or None), other


def outcome_diff(expected: Outcome, actual: Outcome, only: set[str] | None = None) -> list[str]:
    """Field by field, what the model (``-``) and the target (``+``) did differently.

    ``only`` restricts the diff to the fields the machine's comparator flagged.
    """
    fields: list[tuple[str, Any, Any]] = []
    if expected.error != actual.error:
        fields.append(("raises", _error_text(expected), _error_text(actual)))
    elif expected.error is None and not _same(expected.value, actual.value):
        fields.append(("returns", expected.value, actual.value))
    for name in sorted(set(expected.observed) | set(actual.observed)):
        want = expected.observed.get(name, "<not observed>")
        got = actual.observed.get(name, "<not observed>")
        if not _same(want, got):
            fields.append((f"{name}()", want, got))
    if only is not None:
        fields = [f for f in fields if f[0] in only]
    lines: list[str] = []
    for label, want, got in fields:
        lines.append(f"  {label}")
        lines.extend(_value_diff(want, got))
    return lines


def _error_text(outcome: Outcome) -> str:
    if outcome.error is None:
        return "no error"
    return f"{outcome.error}: {outcome.message}" if outcome.message else outcome.error


def _value_diff(want: Any, got: Any) -> list[str]:
    """Each side's value once, then where they differ (:func:`~kvspec.stateful.traces.render.structural_diff`)."""
    a = want if isinstance(want, str) else pprint.pformat(want, width=100, compact=True)
    b = got if isinstance(got, str) else pprint.pformat(got, width=100, compact=True)
    lines = [f"    - model : {a}".replace("\n", "\n              "), f"    + target: {b}".replace("\n", "\n              ")]
    if isinstance(want, str) and isinstance(got, str):
        return lines
    return lines + [f"    where : {line}" for line in structural_diff(want, got)]


def render_steps(steps: Sequence[Step], records: Sequence[StepRecord], mark: int | None,
                 partial_errors: Sequence[str] = ()) -> list[str]:
    """Numbered steps, the model's outcome of each, ``>>`` at ``mark``, ``[adversarial]`` on the
    steps the model rejects (:func:`~kvspec.stateful.traces.render.step_contract`)."""
    lines = []
    width = len(str(len(steps)))
    adversarial = 0
    for i, step in enumerate(steps):
        marker = ">>" if i == mark else "  "
        result = outcome_text(records[i].expected) if i < len(records) else "(not run)"
        kind = step_contract(records[i].expected.error, tuple(partial_errors))[0] if i < len(records) else ""
        tag = "  [adversarial]" if kind == "adversarial" else ""
        adversarial += bool(tag)
        lines.append(f"  {marker} {i + 1:>{width}}  {step.describe()}" + (f"  {result}" if result else "") + tag)
    if adversarial:
        lines.append("     [adversarial]: the model rejects the step (a conforming caller never sends it; the target "
                     "must raise the same error and change nothing); every other step is in-contract")
    return lines


def render_result(result: ReplayResult) -> str:
    """The human-readable replay: steps, and the first divergence as a diff."""
    trace = result.prepared.trace
    recorded = trace.target
    against = result.target.name
    head = (f"kvspec replay: machine {trace.machine}, {len(trace.steps)} steps, target {against}"
            + ("" if against == recorded else f" (recorded against {recorded})"))
    lines = [head]
    recorded_observers = trace.data.get("observers")
    current = {k: list(v) for k, v in result.prepared.machine.observers.items()}
    if isinstance(recorded_observers, dict) and recorded_observers != current:
        lines.append(f"note: machine {trace.machine} now observes {current}; the trace recorded {recorded_observers}")
    if result.divergence is not None:
        d = result.divergence
        lines += render_steps(trace.steps, result.records, d.index, result.prepared.machine.partial_errors)
        kind, why = step_contract(d.expected.error, tuple(result.prepared.machine.partial_errors))
        lines.append(f"DIVERGENCE at step {d.index + 1}: {d.steps[d.index].describe()}  ({kind}: {why})")
        only, extra = flagged_fields(d.differences)
        diff = outcome_diff(d.expected, d.actual, only)
        lines += diff if diff else [f"  - {x}" for x in d.differences] or [f"  {d.summary}"]
        lines += [f"  - {x}" for x in extra if diff]
        lines.append(f"FAIL: {against} diverges from the model (exit 1)")
    elif result.failure is not None:
        lines += render_steps(trace.steps, result.records, result.failure_index)
        lines.append(f"FAILURE after step {result.failure_index + 1}: {against}'s _check() raised {result.failure}")
        lines.append(f"FAIL: {against} breaks its own invariants (exit 1)")
    else:
        lines += render_steps(trace.steps, result.records, None)
        if trace.kind == "error":
            lines.append(f"the trace recorded a failure outside its steps ({trace.data['error']['type']}); "
                         f"the steps now agree and {against}'s _check() passes")
            lines.append(f"confirm with: {trace.data.get('command', 'kvspec check')}")
        lines.append(f"OK: {against} agrees with the model on all {len(trace.steps)} steps (exit 0)")
    return "\n".join(lines)


def assert_replays_clean(trace: Trace | str | dict, target: str | Target | None = None) -> ReplayResult:
    """For tests: replay and raise ``AssertionError`` with the rendered diff if the target diverges."""
    if isinstance(trace, dict):
        trace = validate_trace(trace)
    elif isinstance(trace, str) and trace.lstrip().startswith("{"):
        trace = parse_trace(trace)
    result = replay_trace(trace, target)
    if result.reproduced:
        raise AssertionError(render_result(result))
    return result


def render_failure(trace: dict, target: str | Target | None = None) -> str:
    """What ``kvspec check`` prints under a failure: the minimized steps replayed (each marked
    in-contract or adversarial) and the divergence as a structural diff, each value once.

    Falls back to the recorded steps when the trace does not replay (a flaky target).
    """
    try:
        checked = validate_trace(trace)
        result = replay_trace(checked, target if target is not None else checked.target)
        if result.reproduced:
            return "\n".join(render_result(result).splitlines()[1:-1])
    except KvSpecError:
        pass
    steps = [Step.from_json(s) for s in trace["steps"]]
    mark = trace["divergence"]["index"] if "divergence" in trace else len(steps) - 1
    lines = [f"  {'>>' if i == mark else '  '} {i + 1}  {step.describe()}" for i, step in enumerate(steps)]
    lines += [f"  - {d}" for d in trace.get("divergence", {}).get("differences", [])]
    return "\n".join(lines)
