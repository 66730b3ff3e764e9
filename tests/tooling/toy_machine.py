"""A tiny differential machine for testing traces, replay, reports and the corpus (tests only).

``Shelf`` keeps at most ``capacity`` blocks, publishes a :class:`~kvspec.events.KvCacheEvent` per
change (so traces carry real kvspec value types and a ``drain_*`` observer) and rejects bad input
with :class:`~kvspec.errors.InvalidArgument` leaving itself unchanged.  Namespaces (``toy_shelf``):

* ``MODEL`` — the reference;
* ``GOOD``  — an equivalent implementation (the "impl");
* ``BROKEN`` — ``take`` of the last block forgets to publish its ``Removed`` event;
* ``CRASHY`` — ``take`` of an absent block raises ``KeyError`` instead of ``InvalidArgument``;
* ``SLOPPY`` — agrees on every step but breaks the machine's invariant (an *error* trace).

:func:`install` registers the machine and the targets ``toy-good``/``toy-broken``/``toy-crashy``/
``toy-sloppy``/``toy-model`` so ``kvspec check|replay|report`` find them in-process.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from kvspec.errors import InvalidArgument
from kvspec.protocol import FullBlock
from kvspec.stateful.engine.machine import DifferentialMachine, MachineSpec
from kvspec.targets import Target
from toy_shelf import BROKEN, CRASHY, GOOD, MODEL, SLOPPY


blocks = st.integers(0, 2).map(FullBlock)  # few blocks: a take meets a held one often


class ShelfMachine(DifferentialMachine):
    observers = {"Shelf": ["contents", "tiers", "drain_events"]}
    model_namespace = MODEL

    @initialize(capacity=st.integers(1, 4))
    def make(self, capacity):
        self.run.create("shelf", "Shelf", capacity)

    @rule(block=blocks)
    def put(self, block):
        self.attempt("shelf", "put", block)

    @rule(block=blocks)
    def take(self, block):
        self.attempt("shelf", "take", block)

    @invariant()
    def target_is_sane(self):
        """The target's own structural invariants, as kvspec's machines check ``impl``'s ``_check()``."""
        checker = getattr(self.run.target_objects.get("shelf"), "_check", None)
        if checker is not None:
            checker()


SPEC = MachineSpec("toy-shelf", ShelfMachine, ("Shelf",), description="tests only")


def machines() -> list[MachineSpec]:
    return [SPEC]


TARGETS = {
    name: (lambda n=name, s=ns: Target(n, s, "0-toy"))
    for name, ns in (("toy-good", GOOD), ("toy-broken", BROKEN), ("toy-crashy", CRASHY), ("toy-sloppy", SLOPPY),
                     ("toy-model", MODEL))
}


def install(monkeypatch) -> None:
    """Make the toy machine and targets visible to kvspec (undone by ``monkeypatch``)."""
    import kvspec.stateful.engine.registry as base
    import kvspec.targets as targets

    real = base.all_machines
    monkeypatch.setattr(base, "all_machines", lambda: [*real(), SPEC])
    monkeypatch.setattr(targets, "_REGISTRY", {**targets._REGISTRY, **TARGETS})


STEPS = (("create", 1), ("put", 0), ("take", 0))


def divergence_trace(target_name: str = "toy-broken", steps=STEPS) -> dict:
    """The trace of running ``steps`` (no Hypothesis) on the model and a toy target; must diverge."""
    from kvspec.stateful.engine.differential import Differential, Divergence
    from kvspec.stateful.traces.schema import trace_from_divergence
    target = TARGETS[target_name]()
    machine = SPEC.build(target)
    run = Differential(MODEL, target.namespace, observers=machine.observers)
    try:
        for op, arg in steps:
            try:
                if op == "create":
                    run.create("shelf", "Shelf", arg)
                else:
                    run.call("shelf", op, FullBlock(arg))
            except InvalidArgument:
                pass
    except Divergence as divergence:
        return trace_from_divergence(divergence, spec=SPEC, target=target, profile="ci", seed=None)
    raise AssertionError(f"{target_name} did not diverge on {steps}")
