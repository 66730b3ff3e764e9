"""The ``radix`` machine: a device-tier prefix index (``RadixIndex``) against the reference model.

Rules live in :class:`IndexRules` and draw their events from the shared generator
(:mod:`kvspec.stateful.machines.index_events`); the comparison is pluggable through the class attributes
``compare`` (exact by default, dumps compared as multisets of blocks), ``observers`` and ``mix``
(which adversarial events to draw), so that a contract-mode machine for a third-party index (e.g.
Dynamo's ``RadixTree``, held to the tolerance of ``docs/decisions.md`` D3) subclasses
:class:`RadixMachine` and changes only those.

What is compared after every step: the return value or error class of the step (scores of
``find_matches`` with and without ``early_exit``; ``ParentBlockNotFound``, ``BlockNotFound``,
``InvalidBlockSequence``), and the subject's ``dump_events()`` normalised to a multiset of
``(worker_id, dp_rank, tier, parent, E, L)`` blocks — event ids, event order and how blocks are
grouped into Stored events may legitimately differ.  An erroring step must leave the dump
unchanged, except ``BlockNotFound`` (the rest of the Removed event applies).  When the target has
``_check()`` it runs after every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from hypothesis.stateful import initialize, precondition, rule

from kvspec.events import RouterEvent, StorageTier, Stored
from kvspec.stateful.engine.machine import DifferentialMachine, MachineSpec, weight
from kvspec.stateful.engine.differential import Outcome, Step, exact_compare
from kvspec.stateful.machines.index_events import Draw, EventMix, IndexEvents, pick, tapes


def canonical_dump(events: Any) -> Any:
    """A dump as a sorted multiset of ``(worker_id, dp_rank, tier, parent, E, L)``; non-lists as is."""
    if not isinstance(events, (list, tuple)):
        return events
    out = []
    for item in events:
        if not isinstance(item, RouterEvent) or not isinstance(item.event.data, Stored):
            out.append(("<not a Stored RouterEvent>", repr(item)))
            continue
        parent = item.event.data.parent_hash
        for block in item.event.data.blocks:
            out.append((item.worker_id, item.event.dp_rank, item.storage_tier.value, parent,
                        block.block_hash, block.tokens_hash))
            parent = block.block_hash
    return sorted(out, key=repr)


def _normalise(step: Step, outcome: Outcome) -> Outcome:
    observed = {k: canonical_dump(v) if k == "dump_events" else v for k, v in outcome.observed.items()}
    value = canonical_dump(outcome.value) if step.method == "dump_events" and outcome.error is None else outcome.value
    return Outcome(value, outcome.error, outcome.message, observed)


def index_compare(step: Step, expected: Outcome, actual: Outcome) -> list[str]:
    """Exact comparison, with dumps compared as multisets of blocks (see module docs).

    Equal normalised outcomes (``==``) agree under the exact comparison too (it compares
    :func:`kvspec.codec.canonical` forms, which equal values share): they skip it, and with it
    the O(size of the dump) canonical forms of both sides."""
    want, got = _normalise(step, expected), _normalise(step, actual)
    if want.error == got.error and want.value == got.value and want.observed == got.observed:
        return []
    return exact_compare(step, want, got)


def _holds_blocks(machine: IndexRules) -> bool:
    """Removals, drops and queries wait until some worker holds a block (stores build the state)."""
    return bool(machine.events.held)


class IndexRules(DifferentialMachine):
    """Rules shared by the prefix-index machines: events from :class:`IndexEvents`, queries, dumps.

    Subclasses choose ``index_class`` (the subject's class name), ``tiers``, ``mix`` and
    ``early_exit_choices``, and override :meth:`apply_args` when ``apply_event`` takes more
    arguments.  Every rule goes through ``self.run`` so that the comparison stays pluggable.
    """

    subject: ClassVar[str] = "idx"
    index_class: ClassVar[str] = "RadixIndex"
    tiers: ClassVar[tuple] = ()
    mix: ClassVar[EventMix] = EventMix()
    early_exit_choices: ClassVar[Sequence[bool]] = (False, True)
    observers = {"RadixIndex": ("dump_events",), "TieredIndex": ("dump_events",)}
    compare = staticmethod(index_compare)
    partial_errors = ("BlockNotFound",)

    def __init__(self) -> None:
        super().__init__()
        kwargs = {"tiers": self.tiers} if self.tiers else {}
        self.events = IndexEvents(mix=self.mix, **kwargs)

    @initialize()
    def create_index(self) -> None:
        self.run.create(self.subject, self.index_class)

    # -- events ----------------------------------------------------------------------------

    def apply_args(self, draw: Draw) -> tuple:
        return (draw.worker_id, draw.event)

    def apply(self, draw: Draw) -> None:
        _, error = self.attempt(self.subject, "apply_event", *self.apply_args(draw))
        self.events.record(draw, type(error).__name__ if error is not None else None)

    @weight(3)  # stores are the common case
    @rule(data=tapes())
    def store(self, data) -> None:
        self.apply(self.events.draw_store(data))

    @weight(2)
    @precondition(_holds_blocks)
    @rule(data=tapes())
    def remove(self, data) -> None:
        self.apply(self.events.draw_remove(data))

    @precondition(_holds_blocks)
    @rule(data=tapes())
    def drop_worker(self, data) -> None:
        """``Cleared`` (one rank) half the time, else remove_worker / remove_worker_dp_rank / clear_all_blocks."""
        how = pick(data, ["cleared", "cleared", "cleared", "remove_worker", "remove_worker_dp_rank", "clear_all_blocks"])
        if how == "cleared":
            self.apply(self.events.draw_cleared(data))
            return
        worker_id, rank = self.events.draw_worker(data, holding=StorageTier.DEVICE)
        if how == "remove_worker_dp_rank":
            self.run.call(self.subject, how, worker_id, rank)
            self.events.forget(worker_id, rank)
        else:
            self.run.call(self.subject, how, worker_id)
            self.events.forget(worker_id)

    # -- queries ---------------------------------------------------------------------------

    def query(self, data, early_exit: bool) -> None:
        self.run.call(self.subject, "find_matches", self.events.draw_query(data), early_exit=early_exit)

    # Queries have no precondition: a query of an empty index is a valid query.
    @rule(data=tapes())
    def find_matches(self, data) -> None:
        self.query(data, False)

    @rule(data=tapes())
    def find_matches_early_exit(self, data) -> None:
        self.query(data, pick(data, self.early_exit_choices[::-1]))

    @rule()
    def dump_events(self) -> None:
        self.run.call(self.subject, "dump_events")


def _offers(machine: DifferentialMachine, method: str) -> bool:
    """Whether the target's subject has ``method`` (for methods a target may leave out)."""
    return callable(getattr(machine.run.target_objects.get(machine.subject), method, None))


class RadixMachine(IndexRules):
    """``RadixIndex`` compared exactly with the reference model."""

    optional_methods = {"RadixIndex": ("match_details",)}

    @precondition(lambda self: _holds_blocks(self) and _offers(self, "match_details"))
    @rule(data=tapes())
    def match_details(self, data) -> None:
        """How far each worker matches and which blocks its chains end at (``find_matches``' basis).
        Optional for a target: Dynamo's binding keeps it internal, so it is asked only of targets
        that offer it."""
        self.run.call(self.subject, "match_details", self.events.draw_query(data))


def machines() -> list[MachineSpec]:
    return [
        MachineSpec(
            "radix",
            RadixMachine,
            ("RadixIndex",),
            description="device prefix index: generated event streams (valid and adversarial), "
                        "queries with and without early_exit, dumps as multisets",
        )
    ]
