"""Run the reference model and a target side by side, one recorded step at a time.

A :class:`Differential` owns named *subjects*, each a pair (model object, target object) built from
the same class name.  Every interaction is a :class:`Step` — plain data: subject, method, arguments
— applied to both sides.  After each step the two :class:`Outcome`\\ s are compared: the return
value or the error class, then every *observer* of the subject (methods without arguments such as
``available_blocks`` or ``drain_events`` that expose the observable state).  The first difference
raises :class:`Divergence`, which carries the whole step list, so a failing run *is* a trace that
replays without Hypothesis (``kvspec replay``).

Two rules beyond plain equality, checked on both sides:

* an erroring step must leave the subject as it was: its observers read the same as before, and
  every ``drain_*`` observer reads empty;
* a target must only raise :class:`kvspec.errors.KvSpecError` subclasses; anything else is a
  crash, reported as such.

Comparison goes through a pluggable ``compare`` so that external engines can be held to a documented
contract instead of exact equality (see ``kvspec.stateful.machines.radix``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from kvspec import codec
from kvspec.errors import KvSpecError

__all__ = ["Comparator", "Differential", "Divergence", "Outcome", "Step", "exact_compare", "replay"]


@attrs.frozen
class Step:
    """One interaction.  ``cls`` is set only on construction steps (``method == "__init__"``)."""

    subject: str
    method: str
    args: tuple = attrs.field(default=(), converter=tuple)
    kwargs: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    cls: str | None = None

    @property
    def is_create(self) -> bool:
        return self.method == "__init__"

    def describe(self) -> str:
        """A Python-like one-liner, e.g. ``mgr = KvManager(4, 16)`` or ``mgr.process(Use(...))``."""
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        call = ", ".join(parts)
        if self.is_create:
            return f"{self.subject} = {self.cls}({call})"
        return f"{self.subject}.{self.method}({call})"

    def to_json(self) -> dict[str, Any]:
        out = {"subject": self.subject, "method": self.method, "args": codec.encode(list(self.args))}
        out["kwargs"] = {k: codec.encode(v) for k, v in self.kwargs.items()}
        if self.cls is not None:
            out["cls"] = self.cls
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Step:
        if not isinstance(obj, dict):
            raise codec.DecodeError("a step must be a JSON object")
        subject, method = obj.get("subject"), obj.get("method")
        args, kwargs = obj.get("args", []), obj.get("kwargs", {})
        if not isinstance(subject, str) or not isinstance(method, str):
            raise codec.DecodeError("a step needs string 'subject' and 'method'")
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise codec.DecodeError("a step's 'args' must be a list and 'kwargs' an object")
        if method.startswith("_") and method != "__init__":
            raise codec.DecodeError(f"private method {method!r} cannot be a step")
        klass = obj.get("cls")
        if method == "__init__" and not isinstance(klass, str):
            raise codec.DecodeError("a construction step needs 'cls'")
        return cls(subject, method, tuple(codec.decode(args)), {k: codec.decode(v) for k, v in kwargs.items()}, klass)


@attrs.frozen
class Outcome:
    """What one side did for one step: its return value or error, and its observations after."""

    value: Any = None
    error: str | None = None  # error class name; "crash:<Type>" for a non-kvspec exception
    message: str = ""
    observed: Mapping[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "value": _encode_lenient(self.value),
            "error": self.error,
            "message": self.message,
            "observed": {k: _encode_lenient(v) for k, v in self.observed.items()},
        }


def _encode_lenient(value: Any) -> Any:
    try:
        return codec.encode(value)
    except TypeError:
        return {"$repr": repr(value)}


class Divergence(AssertionError):
    """Model and target disagreed.  ``index`` is the failing step within ``steps``."""

    def __init__(self, summary: str, *, steps: Sequence[Step], index: int, expected: Outcome, actual: Outcome,
                 differences: Sequence[str]):
        self.summary = summary
        self.steps = list(steps)
        self.index = index
        self.expected = expected
        self.actual = actual
        self.differences = list(differences)
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"kvspec divergence at step {self.index + 1} of {len(self.steps)}: {self.summary}", "steps:"]
        for i, step in enumerate(self.steps):
            marker = ">>" if i == self.index else "  "
            lines.append(f"  {marker} {step.describe()}")
        lines.append("differences:")
        lines.extend(f"  - {d}" for d in self.differences)
        return "\n".join(lines)


#: compare(step, expected, actual) -> list of human-readable differences (empty: agreement)
Comparator = Callable[[Step, Outcome, Outcome], list[str]]


def exact_compare(step: Step, expected: Outcome, actual: Outcome) -> list[str]:
    """Exact agreement: same error class (or none), same value, same observations."""
    diffs = []
    if expected.error != actual.error:
        diffs.append(f"error: model {expected.error or 'none'} ({expected.message}), "
                     f"target {actual.error or 'none'} ({actual.message})")
    elif codec.canonical(expected.value) != codec.canonical(actual.value):
        diffs.append(f"return value: model {expected.value!r}, target {actual.value!r}")
    for name, want in expected.observed.items():
        got = actual.observed.get(name, "<missing>")
        if codec.canonical(want) != codec.canonical(got):
            diffs.append(f"{name}(): model {want!r}, target {got!r}")
    return diffs


class Differential:
    """Applies steps to model and target and compares.  See the module docstring."""

    def __init__(
        self,
        model: Any,
        target: Any,
        *,
        observers: Mapping[str, Sequence[str]],
        compare: Comparator = exact_compare,
        check_unchanged_on_error: bool = True,
        partial_errors: Sequence[str] = (),
    ):
        self.model_ns = model
        self.target_ns = target
        self.observers = {k: tuple(v) for k, v in observers.items()}
        self.compare = compare
        self.check_unchanged_on_error = check_unchanged_on_error
        #: error class names that legitimately leave a partial effect (the radix index's
        #: ``BlockNotFound``: the rest of the Removed event still applies)
        self.partial_errors = frozenset(partial_errors)
        self.steps: list[Step] = []
        self.outcomes: list[tuple[Outcome, Outcome]] = []
        self.model_objects: dict[str, Any] = {}
        self.target_objects: dict[str, Any] = {}
        self.classes: dict[str, str] = {}
        self._last_observed: dict[str, tuple[Mapping[str, Any], Mapping[str, Any]]] = {}
        self.target_seconds = 0.0
        self.model_seconds = 0.0

    # -- driving ---------------------------------------------------------------------------

    def create(self, subject: str, cls: str, *args: Any, **kwargs: Any) -> Any:
        """Construct ``cls(*args, **kwargs)`` on both sides under the name ``subject``."""
        return self.apply(Step(subject, "__init__", args, kwargs, cls))

    def call(self, subject: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``subject.method(*args, **kwargs)`` on both sides; returns the model's value."""
        return self.apply(Step(subject, method, args, kwargs))

    def apply(self, step: Step) -> Any:
        """Apply one step to both sides, compare, record; raise :class:`Divergence` on mismatch.

        Returns the model's return value, or raises the model's error (a
        :class:`kvspec.errors.KvSpecError`) when both sides agreed on raising it, so a rule can
        react to it like a caller of the model would.
        """
        self.steps.append(step)
        t0 = time.perf_counter()
        expected, model_exc = self._run(self.model_ns, self.model_objects, step, side="model")
        t1 = time.perf_counter()
        actual, _ = self._run(self.target_ns, self.target_objects, step, side="target")
        t2 = time.perf_counter()
        self.model_seconds += t1 - t0
        self.target_seconds += t2 - t1
        self.outcomes.append((expected, actual))
        if expected.error is not None and expected.error.startswith("crash:"):
            raise model_exc  # a bug in the model or in the machine: surface it as is
        diffs = self.compare(step, expected, actual)
        diffs += self._unchanged_on_error(step, expected, actual)
        if diffs:
            raise Divergence(diffs[0], steps=self.steps, index=len(self.steps) - 1, expected=expected,
                             actual=actual, differences=diffs)
        if step.subject in self.classes:
            self._last_observed[step.subject] = (expected.observed, actual.observed)
        if model_exc is not None:
            raise model_exc
        return expected.value

    def _run(self, namespace: Any, objects: dict[str, Any], step: Step, side: str) -> tuple[Outcome, BaseException | None]:
        value, error, message, exc = None, None, "", None
        try:
            if step.is_create:
                cls = getattr(namespace, step.cls)
                objects[step.subject] = cls(*step.args, **step.kwargs)
                self.classes[step.subject] = step.cls
            else:
                obj = objects[step.subject]
                value = getattr(obj, step.method)(*step.args, **step.kwargs)
        except KvSpecError as e:
            error, message, exc = type(e).__name__, str(e), e
        except Exception as e:  # noqa: BLE001 - a target may fail in any way; report it
            error, message, exc = f"crash:{type(e).__name__}", str(e), e
        observed = self._observe(objects, step.subject, step.cls or self.classes.get(step.subject))
        return Outcome(value, error, message, observed), exc

    def _observe(self, objects: dict[str, Any], subject: str, cls: str | None) -> dict[str, Any]:
        obj = objects.get(subject)
        if obj is None or cls is None:
            return {}
        out = {}
        for name in self.observers.get(cls, ()):
            try:
                out[name] = getattr(obj, name)()
            except Exception as e:  # noqa: BLE001
                out[name] = f"<{type(e).__name__}: {e}>"
        return out

    def _unchanged_on_error(self, step: Step, expected: Outcome, actual: Outcome) -> list[str]:
        if not self.check_unchanged_on_error or step.is_create or step.subject not in self._last_observed:
            return []
        diffs = []
        before = self._last_observed[step.subject]
        for side, outcome, previous in (("model", expected, before[0]), ("target", actual, before[1])):
            if outcome.error is None or outcome.error in self.partial_errors:
                continue
            for name, now in outcome.observed.items():
                if name.startswith("drain"):
                    if now:
                        diffs.append(f"{side} raised {outcome.error} but still produced {name}() = {now!r}")
                elif name in previous and codec.canonical(now) != codec.canonical(previous[name]):
                    diffs.append(f"{side} raised {outcome.error} but changed {name}(): "
                                 f"{previous[name]!r} -> {now!r}")
        return diffs

    # -- access for invariants ---------------------------------------------------------------

    def model(self, subject: str) -> Any:
        return self.model_objects[subject]

    def target(self, subject: str) -> Any:
        return self.target_objects[subject]

    def both(self, subject: str) -> tuple[Any, Any]:
        return self.model_objects[subject], self.target_objects[subject]


def replay(steps: Sequence[Step], model: Any, target: Any, *, observers: Mapping[str, Sequence[str]],
           compare: Comparator = exact_compare, partial_errors: Sequence[str] = ()) -> Divergence | None:
    """Re-run ``steps`` on fresh objects; return the first divergence, or ``None`` if they agree.

    Errors both sides agree on are part of the expected behaviour and do not stop the replay.
    """
    run = Differential(model, target, observers=observers, compare=compare, partial_errors=partial_errors)
    for step in steps:
        try:
            run.apply(step)
        except Divergence as d:
            return d
        except KvSpecError:
            continue
    return None
