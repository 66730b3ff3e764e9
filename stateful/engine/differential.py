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

Observation: ``observe="every-step"`` (the default, what ``kvspec check`` and replay use) reads
and compares every observer after every step, as above.  ``observe="checkpoints"`` is the fuzz
mode's cheaper contract (:mod:`kvspec.stateful.fuzz`): after every step it compares the return
value or error and the ``drain_*`` observers (they are per-step and destructive); the other
observers — the subject's *state* — are read only when someone asks (a machine reading
``outcomes[-1]``) and compared at a :meth:`Differential.checkpoint`: every ``checkpoint_every``
steps of a subject, and when the driver ends a run (a step that *is* the subject's only state
observer, such as ``idx.dump_events()``, compares it like a checkpoint).  A state difference is therefore found a few
steps late (a target that changes its state on an erroring step differs from the model, which
did not, at the next checkpoint), and the fuzz driver replays the steps with
``observe="every-step"`` to name the exact step, so traces read the same in both modes.  What this
mode cannot see: a difference that a later step undoes before the checkpoint, and an erroring
step that changes the *model* (the state is compared model against target, not before against
after; ``kvspec check`` checks both).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from kvspec import codec
from kvspec.errors import KvSpecError

__all__ = ["OBSERVE_MODES", "Comparator", "Differential", "Divergence", "LazyObservations", "Outcome",
           "StaleObservation", "Step", "exact_compare", "replay"]

#: ``every-step``: every observer compared after every step; ``checkpoints``: see the module docs
OBSERVE_MODES = ("every-step", "checkpoints")


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


def _read_observer(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name)()
    except Exception as e:  # noqa: BLE001 - an observer may fail in any way; the failure is the value
        return _failure(e)


def _failure(exc: BaseException) -> str:
    """An observer's value when reading it raised: ``<Type: message>``, compared like any value."""
    return f"<{type(exc).__name__}: {exc}>"


def _raise(exc: BaseException) -> None:
    """``raise exc`` from a frame that does not keep ``exc`` in a variable (no reference cycle)."""
    try:
        raise exc
    finally:
        exc = None  # noqa: F841


# -- the checkpoint mode's hot path builds its Steps and Outcomes through their slots ---------------
# A frozen attrs class's ``__init__`` sets each field through ``object.__setattr__``; setting the
# slots directly costs about half (0.5 us a step for one Step and two Outcomes).  Only where every
# field is given and already of its final type: Outcome has no validator or converter; Step's
# converters make ``args`` a tuple and ``kwargs`` a new dict, which :meth:`Differential.call_step`
# is handed (tests/unit/test_fuzz_observation.py checks both equal their ``__init__``'s objects).

_new = object.__new__
_set_value, _set_error, _set_message, _set_observed = (
    Outcome.__dict__[name].__set__ for name in ("value", "error", "message", "observed"))
_set_subject, _set_method, _set_args, _set_kwargs, _set_cls = (
    Step.__dict__[name].__set__ for name in ("subject", "method", "args", "kwargs", "cls"))


def _outcome(value: Any, error: str | None, message: str, observed: Mapping[str, Any]) -> Outcome:
    """``Outcome(value, error, message, observed)``, through its slots."""
    outcome = _new(Outcome)
    _set_value(outcome, value)
    _set_error(outcome, error)
    _set_message(outcome, message)
    _set_observed(outcome, observed)
    return outcome


def _step(subject: str, method: str, args: tuple, kwargs: dict[str, Any]) -> Step:
    """``Step(subject, method, args, kwargs)``, through its slots (``args`` a tuple, ``kwargs`` a
    dict that nobody else holds)."""
    step = _new(Step)
    _set_subject(step, subject)
    _set_method(step, method)
    _set_args(step, args)
    _set_kwargs(step, kwargs)
    _set_cls(step, None)
    return step


class StaleObservation(RuntimeError):
    """An observer of an earlier step was read after a later step (``observe="checkpoints"``).

    ``name`` is the observer: pass it in ``eager`` to have it read after every step."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"observer {name}() of an earlier step was not read in time: with "
                         f"observe='checkpoints' read only the last step's observations, or name it in 'eager'")


class LazyObservations(Mapping):
    """One side's observers after one step, read on first access (``observe="checkpoints"``).

    ``drain_*`` observers and the ``eager`` ones are read at once (drains are destructive and belong
    to their step); the others when first asked for, which is only right while no later step has
    touched the subject: once one has, the mapping is *stale* and an unread observer raises
    :class:`StaleObservation` instead of answering with a later state.
    """

    __slots__ = ("_obj", "_names", "_values", "stale")

    def __init__(self, obj: Any, names: Sequence[str], values: dict[str, Any]) -> None:
        self._obj, self._names, self._values = obj, names, values
        self.stale = False

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            if name not in self._names:
                raise
        if self.stale:
            raise StaleObservation(name)
        value = self._values[name] = _read_observer(self._obj, name)
        return value

    def get(self, name: str, default: Any = None) -> Any:
        """``self[name]`` or ``default`` for a name that is not an observer (the drains are read
        already: O(1) for them, without :class:`Mapping`'s ``get`` going through ``KeyError``)."""
        try:
            return self._values[name]
        except KeyError:
            return self[name] if name in self._names else default

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"LazyObservations(read={sorted(self._values)}, stale={self.stale})"


def _invoke(obj: Any, method: str, args: tuple, kwargs: Mapping[str, Any]) -> tuple[Any, BaseException | None]:
    """``(obj.method(*args, **kwargs), None)`` or ``(None, exception)``; the exception is returned
    from inside its handler (no frame -> exception -> traceback -> frame cycle, as ``_call``)."""
    try:
        return getattr(obj, method)(*args, **kwargs), None
    except Exception as e:  # noqa: BLE001 - a target may fail in any way; the caller classifies it
        return None, e


def _classify(exc: BaseException) -> tuple[str, str]:
    """``(error, message)`` of an :class:`Outcome`: the class name of a kvspec error, else a crash."""
    name = type(exc).__name__
    return (name if isinstance(exc, KvSpecError) else f"crash:{name}"), str(exc)


def _drain_reader(obj: Any, names: Sequence[str]) -> Callable[[], dict[str, Any]] | None:
    """A function reading ``obj``'s observers ``names`` into a new dict (a failure is its value,
    as :func:`_read_observer`), the methods bound once; ``None`` if one is not an attribute."""
    bound = tuple((name, getattr(obj, name, None)) for name in names)
    if any(method is None for _, method in bound):
        return None
    if not bound:
        return dict
    if len(bound) == 1:
        ((only, method),) = bound

        def read_one() -> dict[str, Any]:
            try:
                return {only: method()}
            except Exception as e:  # noqa: BLE001 - an observer may fail in any way; the failure is the value
                return {only: _failure(e)}
        return read_one

    def read() -> dict[str, Any]:
        out = {}
        for name, method in bound:
            try:
                out[name] = method()
            except Exception as e:  # noqa: BLE001
                out[name] = _failure(e)
        return out
    return read


@attrs.frozen
class _Lane:
    """One subject as the checkpoint mode's hot path needs it: both objects, the observer names,
    the drains (and ``eager`` observers) bound on each side, and the state observer a step may
    *be* (``only_state``, when the subject has exactly one).  Built once per construction."""

    model: Any
    target: Any
    names: tuple[str, ...]
    read_model_drains: Callable[[], dict[str, Any]]
    read_target_drains: Callable[[], dict[str, Any]]
    only_state: str | None

    @classmethod
    def of(cls, model: Any, target: Any, names: Sequence[str], drains: Sequence[str],
           only_state: str | None) -> _Lane | None:
        read_model, read_target = _drain_reader(model, drains), _drain_reader(target, drains)
        if read_model is None or read_target is None:
            return None
        return cls(model, target, tuple(names), read_model, read_target, only_state)


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
        observe: str = "every-step",
        checkpoint_every: int = 16,
        eager: Sequence[str] = (),
    ):
        self.model_ns = model
        self.target_ns = target
        self.observers = {k: tuple(v) for k, v in observers.items()}
        self.compare = compare
        self.check_unchanged_on_error = check_unchanged_on_error
        #: error class names that legitimately leave a partial effect (the radix index's
        #: ``BlockNotFound``: the rest of the Removed event still applies)
        self.partial_errors = frozenset(partial_errors)
        if observe not in OBSERVE_MODES:
            raise ValueError(f"observe must be one of {OBSERVE_MODES}, not {observe!r}")
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.observe = observe
        self.checkpoint_every = checkpoint_every
        #: checkpoint mode: observers read after every step anyway (besides the drains)
        self.eager = frozenset(eager)
        self._every_step = observe == "every-step"
        #: checkpoint mode: subject -> steps since its last checkpoint, and its latest observations
        self._unchecked: dict[str, int] = {}
        self._live: dict[str, tuple[LazyObservations, LazyObservations]] = {}
        self._drains: dict[str, tuple[str, ...]] = {}
        self._states: dict[str | None, tuple[str, ...]] = {}
        #: checkpoint mode: subject -> its :class:`_Lane` (both objects and what is read per step)
        self._lanes: dict[str, _Lane] = {}
        self.checkpoints = 0
        self.steps: list[Step] = []
        self.outcomes: list[tuple[Outcome, Outcome]] = []
        self.model_objects: dict[str, Any] = {}
        self.target_objects: dict[str, Any] = {}
        self.classes: dict[str, str] = {}
        self._last_observed: dict[str, tuple[Mapping[str, Any], Mapping[str, Any]]] = {}
        #: time spent in each side's calls (``observe="checkpoints"``: construction steps only)
        self.target_seconds = 0.0
        self.model_seconds = 0.0

    # -- driving ---------------------------------------------------------------------------

    def create(self, subject: str, cls: str, *args: Any, **kwargs: Any) -> Any:
        """Construct ``cls(*args, **kwargs)`` on both sides under the name ``subject``."""
        return self.apply(Step(subject, "__init__", args, kwargs, cls))

    def call(self, subject: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``subject.method(*args, **kwargs)`` on both sides; returns the model's value."""
        return self.call_step(subject, method, args, kwargs)

    def call_step(self, subject: str, method: str, args: tuple, kwargs: dict[str, Any]) -> Any:
        """:meth:`call` with the arguments as they were packed (``args`` a tuple, ``kwargs`` a dict
        the caller hands over), so that a caller that packed them already does not pack them again."""
        if self._every_step:
            return self.apply(Step(subject, method, args, kwargs))
        return self._apply_at_checkpoints(_step(subject, method, args, kwargs))

    def apply(self, step: Step) -> Any:
        """Apply one step to both sides, compare, record; raise :class:`Divergence` on mismatch.

        Returns the model's return value, or raises the model's error (a
        :class:`kvspec.errors.KvSpecError`) when both sides agreed on raising it, so a rule can
        react to it like a caller of the model would.
        """
        if not self._every_step:
            return self._apply_at_checkpoints(step)
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
            _raise(model_exc)  # a bug in the model or in the machine: surface it as is
        diffs = self.compare(step, expected, actual)
        diffs += self._unchanged_on_error(step, expected, actual)
        if diffs:
            raise Divergence(diffs[0], steps=self.steps, index=len(self.steps) - 1, expected=expected,
                             actual=actual, differences=diffs)
        if step.subject in self.classes:
            self._last_observed[step.subject] = (expected.observed, actual.observed)
        if model_exc is not None:
            _raise(model_exc)
        return expected.value

    def _run(self, namespace: Any, objects: dict[str, Any], step: Step, side: str) -> tuple[Outcome, BaseException | None]:
        value, exc = self._call(namespace, objects, step)
        if exc is not None and side == "target":
            exc.__traceback__ = None  # only its class and message are reported; frees its frames
        error, message = _classify(exc) if exc is not None else (None, "")
        observed = self._observe(objects, step.subject, step.cls or self.classes.get(step.subject))
        return Outcome(value, error, message, observed), exc

    def _call(self, namespace: Any, objects: dict[str, Any], step: Step) -> tuple[Any, BaseException | None]:
        """Run the step on one side: ``(value, None)`` or ``(None, exception)``.

        The exception is returned from inside its handler, which unbinds it from this frame: no
        frame -> exception -> traceback -> frame cycle is left for the garbage collector."""
        try:
            if step.is_create:
                objects[step.subject] = getattr(namespace, step.cls)(*step.args, **step.kwargs)
                self.classes[step.subject] = step.cls
                return None, None
            return getattr(objects[step.subject], step.method)(*step.args, **step.kwargs), None
        except Exception as e:  # noqa: BLE001 - a target may fail in any way; _run classifies it
            return None, e

    def _observe(self, objects: dict[str, Any], subject: str, cls: str | None) -> dict[str, Any]:
        obj = objects.get(subject)
        if obj is None or cls is None:
            return {}
        return {name: _read_observer(obj, name) for name in self.observers.get(cls, ())}

    # -- observe="checkpoints" -----------------------------------------------------------------

    def _apply_at_checkpoints(self, step: Step) -> Any:
        """:meth:`apply` with ``observe="checkpoints"``: value, error and drains now, the state at
        the subject's next checkpoint.  Equal raw values skip the comparator: whatever it
        tolerates, it accepts identical outcomes.  O(drains) besides the step itself.

        The fuzz mode's hot path: a subject built on both sides has a :class:`_Lane` (its two
        objects, its observers, its drains as bound methods), so a step is two calls, the drains
        and one equality test, with no lookup by name and no clock read (``model_seconds`` and
        ``target_seconds`` count only the steps of the general path).  Construction steps (which
        (re)build the lane) and subjects missing on a side take :meth:`_apply_first`."""
        subject = step.subject
        lane = self._lanes.get(subject)
        if lane is None or step.method == "__init__":
            return self._apply_first(step)
        self.steps.append(step)
        live = self._live.get(subject)
        if live is not None:
            live[0].stale = live[1].stale = True
        method, args, kwargs = step.method, step.args, step.kwargs
        value_e, exc_e = _invoke(lane.model, method, args, kwargs)
        drains_e = lane.read_model_drains()
        value_a, exc_a = _invoke(lane.target, method, args, kwargs)
        drains_a = lane.read_target_drains()
        error_e = message_e = error_a = message_a = None
        if exc_e is not None:
            error_e, message_e = _classify(exc_e)
        if exc_a is not None:
            exc_a.__traceback__ = None  # only its class and message are reported; frees its frames
            error_a, message_a = _classify(exc_a)
        lazy_e = LazyObservations(lane.model, lane.names, drains_e)
        lazy_a = LazyObservations(lane.target, lane.names, drains_a)
        expected = _outcome(value_e, error_e, message_e or "", lazy_e)
        actual = _outcome(value_a, error_a, message_a or "", lazy_a)
        self.outcomes.append((expected, actual))
        if error_e is not None and error_e.startswith("crash:"):
            _raise(exc_e)  # a bug in the model or in the machine: surface it as is
        self._live[subject] = (lazy_e, lazy_a)
        if not (error_e == error_a and drains_e == drains_a and value_e == value_a
                and type(value_e) is type(value_a)):
            self._compare_now(step, expected, actual, dict(drains_e), dict(drains_a))
        if error_e is None and method == lane.only_state:
            self._unchecked[subject] = 0  # the step read the only state observer: compared above
        else:
            unchecked = self._unchecked[subject] = self._unchecked.get(subject, 0) + 1
            if unchecked >= self.checkpoint_every:
                self.checkpoint(subject)
        if exc_e is not None:
            _raise(exc_e)
        return value_e

    def _apply_first(self, step: Step) -> Any:
        """:meth:`_apply_at_checkpoints` for a construction step or a subject without a lane
        (the general path; it builds the subject's lane once both sides hold an object)."""
        subject = step.subject
        self.steps.append(step)
        self._lanes.pop(subject, None)
        live = self._live.get(subject)
        if live is not None:
            live[0].stale = live[1].stale = True
        t0 = time.perf_counter()
        expected, model_exc = self._run_lazily(self.model_ns, self.model_objects, step, "model")
        t1 = time.perf_counter()
        actual, _ = self._run_lazily(self.target_ns, self.target_objects, step, "target")
        self.target_seconds += time.perf_counter() - t1
        self.model_seconds += t1 - t0
        self.outcomes.append((expected, actual))
        if expected.error is not None and expected.error.startswith("crash:"):
            _raise(model_exc)  # a bug in the model or in the machine: surface it as is
        drains_e = drains_a = {}
        if isinstance(expected.observed, LazyObservations):  # nothing but the drains read yet
            self._live[subject] = (expected.observed, actual.observed)
            drains_e, drains_a = expected.observed._values, actual.observed._values
        if not (expected.error == actual.error and drains_e == drains_a and expected.value == actual.value
                and type(expected.value) is type(actual.value)):
            self._compare_now(step, expected, actual, dict(drains_e), dict(drains_a))
        if step.is_create:
            self._unchecked[subject] = 0
        elif expected.error is None and self._states_of(subject) == (step.method,):
            self._unchecked[subject] = 0  # the step read the only state observer: compared above
        else:
            unchecked = self._unchecked[subject] = self._unchecked.get(subject, 0) + 1
            if unchecked >= self.checkpoint_every:
                self.checkpoint(subject)
        self._open_lane(subject)
        if model_exc is not None:
            _raise(model_exc)
        return expected.value

    def _open_lane(self, subject: str) -> None:
        """Give ``subject`` a :class:`_Lane` when both sides hold an object of a known class
        whose drains are all methods (otherwise its steps keep the general path)."""
        cls = self.classes.get(subject)
        model, target = self.model_objects.get(subject), self.target_objects.get(subject)
        if cls is None or model is None or target is None:
            return
        names = self.observers.get(cls, ())
        drains = self._drains.get(cls)
        if drains is None:
            drains = self._drains[cls] = tuple(n for n in names if n.startswith("drain") or n in self.eager)
        states = self._states_of(subject)
        lane = _Lane.of(model, target, names, drains, states[0] if len(states) == 1 else None)
        if lane is not None:
            self._lanes[subject] = lane

    def _run_lazily(self, namespace: Any, objects: dict[str, Any], step: Step, side: str) -> tuple[Outcome, BaseException | None]:
        value, exc = self._call(namespace, objects, step)
        error, message = None, ""
        if exc is not None:
            if side == "target":
                exc.__traceback__ = None
            error, message = _classify(exc)
        obj = objects.get(step.subject)
        cls = step.cls or self.classes.get(step.subject)
        if obj is None or cls is None:
            return Outcome(value, error, message, {}), exc
        drains = self._drains.get(cls)
        if drains is None:
            drains = self._drains[cls] = tuple(n for n in self.observers.get(cls, ())
                                               if n.startswith("drain") or n in self.eager)
        read = {name: _read_observer(obj, name) for name in drains} if drains else {}
        return Outcome(value, error, message, LazyObservations(obj, self.observers.get(cls, ()), read)), exc

    def _compare_now(self, step: Step, expected: Outcome, actual: Outcome, drains_e: dict, drains_a: dict) -> None:
        shown_e = Outcome(expected.value, expected.error, expected.message, drains_e)
        shown_a = Outcome(actual.value, actual.error, actual.message, drains_a)
        diffs = self.compare(step, shown_e, shown_a)
        for side, outcome in (("model", shown_e), ("target", shown_a)):
            if outcome.error is not None and outcome.error not in self.partial_errors:
                diffs += [f"{side} raised {outcome.error} but still produced {name}() = {now!r}"
                          for name, now in outcome.observed.items() if now and name.startswith("drain")]
        if diffs:
            raise Divergence(diffs[0], steps=self.steps, index=len(self.steps) - 1, expected=shown_e,
                             actual=shown_a, differences=diffs)

    def _states_of(self, subject: str) -> tuple[str, ...]:
        """The subject's state observers (every observer but the drains)."""
        cls = self.classes.get(subject)
        states = self._states.get(cls)
        if states is None:
            states = self._states[cls] = tuple(n for n in self.observers.get(cls, ()) if not n.startswith("drain"))
        return states

    def checkpoint(self, subject: str | None = None) -> None:
        """Compare the state observers of ``subject`` (of every subject stepped since its last
        checkpoint when ``None``) on both sides; raise :class:`Divergence` on a difference.

        With ``observe="every-step"`` every step already did this: nothing to do.
        """
        if self._every_step:
            return
        subjects = [subject] if subject is not None else [s for s, n in self._unchecked.items() if n]
        for name in subjects:
            self._unchecked[name] = 0
            cls = self.classes.get(name)
            if cls is None or name not in self.model_objects or name not in self.target_objects:
                continue
            states = self._states_of(name)
            live = self._live.get(name)
            if live is not None and not live[0].stale:  # reuse what the machine already read
                want = {n: live[0][n] for n in states}
                got = {n: live[1][n] for n in states}
            else:
                want = {n: _read_observer(self.model_objects[name], n) for n in states}
                got = {n: _read_observer(self.target_objects[name], n) for n in states}
            self.checkpoints += 1
            if want == got:
                continue
            step = next(s for s in reversed(self.steps) if s.subject == name)
            expected, actual = Outcome(observed=want), Outcome(observed=got)
            diffs = self.compare(step, expected, actual)
            if diffs:
                raise Divergence(f"at a checkpoint: {diffs[0]}", steps=self.steps, index=len(self.steps) - 1,
                                 expected=expected, actual=actual, differences=diffs)

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
