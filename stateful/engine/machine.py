"""The base of every kvspec state machine, and the registry that ``kvspec check`` walks.

A machine is a Hypothesis :class:`~hypothesis.stateful.RuleBasedStateMachine` whose rules build
:class:`~kvspec.stateful.engine.differential.Step`\\ s and hand them to ``self.run``, a
:class:`~kvspec.stateful.engine.differential.Differential` that applies them to the reference model and
to the target.  Machines are *built per target*: :meth:`MachineSpec.build` returns a subclass bound
to one :class:`~kvspec.targets.Target` and one parameter set (an eviction backend, say), so the
same rules serve ``impl``, a mutant or a user's adapter.

Machine families (:mod:`kvspec.stateful.machines`) expose ``machines() -> list[MachineSpec]``;
:mod:`kvspec.stateful.engine.registry` lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import attrs
from hypothesis.stateful import RuleBasedStateMachine, invariant

import kvspec.model
from kvspec.errors import KvSpecError
from kvspec.stateful.engine.differential import Comparator, Differential, exact_compare
from kvspec.stateful.engine.rule_choice import EnabledRuleStrategy, RuleChoiceCounts
from kvspec.targets import Target

__all__ = ["DifferentialMachine", "MachineSpec", "RunStats", "weight"]


@attrs.define
class RunStats:
    """Counters one machine class accumulates over a run (all examples, shrinking included)."""

    examples: int = 0
    steps: int = 0
    model_seconds: float = 0.0
    target_seconds: float = 0.0
    rule_choices: RuleChoiceCounts = attrs.Factory(RuleChoiceCounts)


def weight(n: int) -> Callable[[Any], Any]:
    """Make a rule ``n`` times as likely to be chosen as a rule of weight 1 (put it above ``@rule``).

    A machine picks uniformly among the rules it may run (see
    :mod:`~kvspec.stateful.engine.rule_choice`); a weighted rule is entered ``n`` times in
    the machine's rule table (as ``name``, ``name__2``, ...) by :class:`DifferentialMachine`, so
    the rule is written once.

    >>> @weight(3)
    ... def store(self): ...
    >>> store.kvspec_weight
    3
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError("a rule's weight is a positive int")

    def mark(function: Any) -> Any:
        function.kvspec_weight = n
        return function

    return mark


class DifferentialMachine(RuleBasedStateMachine):
    """Base class: owns the :class:`Differential` and the per-class statistics.

    Subclasses set ``observers`` (class name -> observer method names) and may override
    ``compare``.  Class attributes ``target`` and ``params`` are filled in by
    :meth:`MachineSpec.build`.
    """

    target: ClassVar[Target]
    params: ClassVar[Mapping[str, Any]] = {}
    observers: ClassVar[Mapping[str, Sequence[str]]] = {}
    compare: ClassVar[Comparator] = staticmethod(exact_compare)
    #: error class names allowed to leave a partial effect (see ``Differential.partial_errors``)
    partial_errors: ClassVar[tuple[str, ...]] = ()
    stats: ClassVar[RunStats]
    #: class name -> methods the machine calls only when the target offers them (pre-flight skips them)
    optional_methods: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    model_namespace: ClassVar[Any] = kvspec.model
    #: extra :class:`Differential` options; the fuzz driver sets ``observe="checkpoints"`` here
    run_options: ClassVar[Mapping[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Enter each :func:`weight`-ed rule as many times as its weight (see :func:`weight`)."""
        super().__init_subclass__(**kwargs)
        for name, member in list(vars(cls).items()):
            for copy in range(2, getattr(member, "kvspec_weight", 1) + 1):
                setattr(cls, f"{name}__{copy}", member)

    def __init__(self) -> None:
        super().__init__()
        cls = type(self)
        self.run = Differential(
            cls.model_namespace,
            cls.target.namespace,
            observers=cls.observers,
            compare=cls.compare,
            partial_errors=cls.partial_errors,
            **cls.run_options,
        )
        # rules are chosen among those that may run now, never by a retried, filtered draw
        self._rules_strategy = EnabledRuleStrategy(self, cls.stats.rule_choices)
        cls.stats.examples += 1

    def attempt(self, subject: str, method: str, *args: Any, **kwargs: Any) -> tuple[Any, KvSpecError | None]:
        """Call on both sides; return ``(value, None)`` or ``(None, error)`` when both raised alike."""
        try:
            return self.run.call_step(subject, method, args, kwargs), None
        except KvSpecError as error:
            # the error is a value here; its traceback would tie the caller's frame (which keeps
            # the error) into a reference cycle only the garbage collector frees
            return None, error.with_traceback(None)

    @invariant()
    def target_structures_hold(self) -> None:
        """Every target object's own ``_check()`` holds after every step (O(size) each).

        kvspec's structures state their invariants in ``_check()`` (both managers, the pools, the
        indexes, the trackers); a target without one is not checked here.  A failure is reported
        as an error trace, whose replay re-runs ``_check()`` after each step to find it again.
        """
        for subject, obj in self.run.target_objects.items():
            check = getattr(obj, "_check", None)
            if check is None:
                continue
            try:
                check()
            except Exception as exc:  # noqa: BLE001 - any failure of the target's own invariants
                raise AssertionError(f"target {subject}._check() failed: {type(exc).__name__}: {exc}") from exc

    def teardown(self) -> None:
        cls = type(self)
        cls.stats.steps += len(self.run.steps)
        cls.stats.model_seconds += self.run.model_seconds
        cls.stats.target_seconds += self.run.target_seconds


@attrs.frozen
class MachineSpec:
    """A named, parametrised machine.

    ``requires`` are the class names the target must provide; ``factory`` is the
    :class:`DifferentialMachine` subclass holding the rules; ``params`` are bound as a class
    attribute (e.g. ``{"eviction": "lru"}``).  ``modes`` lists the target modes the machine can
    check (``exact`` always; ``contract`` for machines that know the documented tolerance).
    """

    name: str
    factory: type[DifferentialMachine]
    requires: tuple[str, ...]
    params: Mapping[str, Any] = attrs.field(factory=dict)
    description: str = ""
    modes: tuple[str, ...] = ("exact",)
    #: target name -> id of a documented finding (``docs/findings.md``) this machine is known to
    #: reproduce against that target.  Like a strict xfail: a divergence there is reported as
    #: ``known`` (not a failure) until upstream fixes it; every other target fails as usual.
    known_failures: Mapping[str, str] = attrs.field(factory=dict)

    def applies_to(self, target: Target) -> str | None:
        """``None`` if the machine can run against ``target``, else the reason it is skipped."""
        missing = [c for c in self.requires if not target.provides(c)]
        if missing:
            return f"target lacks {', '.join(missing)}"
        if target.mode not in self.modes:
            return f"machine does not support {target.mode} mode"
        return None

    def build(self, target: Target) -> type[DifferentialMachine]:
        name = "".join(ch if ch.isalnum() else "_" for ch in f"{self.factory.__name__}_{self.name}")
        return type(
            name,
            (self.factory,),
            {"target": target, "params": dict(self.params), "stats": RunStats(), "__module__": self.factory.__module__},
        )
