"""A tiny differential machine for testing traces, replay, reports and the corpus (tests only).

``Shelf`` keeps at most ``capacity`` blocks, publishes a :class:`~kvspec.events.KvCacheEvent` per
change (so traces carry real kvspec value types and a ``drain_*`` observer) and rejects bad input
with :class:`~kvspec.errors.InvalidArgument` leaving itself unchanged.  Three namespaces:

* ``MODEL`` — the reference;
* ``GOOD``  — an independent, equivalent implementation (the "impl");
* ``BROKEN`` — ``take`` of the last block forgets to publish its ``Removed`` event;
* ``CRASHY`` — ``take`` of an absent block raises ``KeyError`` instead of ``InvalidArgument``.

:func:`install` registers the machine and the targets ``toy-good``/``toy-broken``/``toy-crashy``
so ``kvspec check|replay|report`` find them in-process.
"""

from __future__ import annotations

import types

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from kvspec.errors import InvalidArgument
from kvspec.events import KvCacheEvent, Removed, StorageTier, Stored, StoredBlock
from kvspec.protocol import FullBlock
from kvspec.stateful.base import DifferentialMachine, MachineSpec
from kvspec.targets import Target, register_target


class Shelf:
    """Reference: a set of blocks with a capacity; every change is an event."""

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise InvalidArgument("capacity must be positive")
        self.capacity = capacity
        self.blocks: list[int] = []
        self.events: list[KvCacheEvent] = []
        self.next_id = 0

    def _emit(self, data):
        self.events.append(KvCacheEvent(self.next_id, data))
        self.next_id += 1

    def put(self, block: FullBlock) -> int:
        if block.hash in self.blocks or len(self.blocks) >= self.capacity:
            raise InvalidArgument("full or duplicate")
        self.blocks.append(block.hash)
        self._emit(Stored(None, (StoredBlock(block.hash, block.hash % 7),)))
        return len(self.blocks)

    def take(self, block: FullBlock) -> int:
        if block.hash not in self.blocks:
            raise InvalidArgument(f"{block} not on the shelf")
        self.blocks.remove(block.hash)
        self._emit(Removed((block.hash,)))
        return len(self.blocks)

    def contents(self) -> tuple:
        return tuple(sorted(self.blocks))

    def tiers(self) -> dict:
        return {StorageTier.DEVICE: len(self.blocks)}

    def drain_events(self) -> list:
        out, self.events = self.events, []
        return out


class GoodShelf(Shelf):
    """Equivalent target (uses a set; returns a list where the model returns a tuple)."""

    def contents(self) -> list:  # canonical comparison: a list equals the model's tuple
        return sorted(self.blocks)


class BrokenShelf(Shelf):
    def take(self, block: FullBlock) -> int:
        if block.hash not in self.blocks:
            raise InvalidArgument(f"{block} not on the shelf")
        self.blocks.remove(block.hash)
        if self.blocks:  # planted bug: emptying the shelf publishes nothing
            self._emit(Removed((block.hash,)))
        return len(self.blocks)


class CrashyShelf(Shelf):
    def take(self, block: FullBlock) -> int:
        if block.hash not in self.blocks:
            raise KeyError(block.hash)
        return super().take(block)


MODEL = types.SimpleNamespace(Shelf=Shelf)
GOOD = types.SimpleNamespace(Shelf=GoodShelf)
BROKEN = types.SimpleNamespace(Shelf=BrokenShelf)
CRASHY = types.SimpleNamespace(Shelf=CrashyShelf)

blocks = st.integers(0, 5).map(FullBlock)


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
        target = self.run.target_objects.get("shelf")
        if target is not None:
            assert len(target.blocks) <= target.capacity


SPEC = MachineSpec("toy-shelf", ShelfMachine, ("Shelf",), description="tests only")


def machines() -> list[MachineSpec]:
    return [SPEC]


def install(monkeypatch) -> None:
    """Make the toy machine and targets visible to kvspec (undone by ``monkeypatch``)."""
    import kvspec.stateful.base as base
    import kvspec.targets as targets

    real = base.all_machines
    monkeypatch.setattr(base, "all_machines", lambda: [*real(), SPEC])
    registry = dict(targets._REGISTRY)
    for name, ns in (("toy-good", GOOD), ("toy-broken", BROKEN), ("toy-crashy", CRASHY), ("toy-model", MODEL)):
        registry[name] = (lambda n=name, s=ns: Target(n, s, "0-toy"))
    monkeypatch.setattr(targets, "_REGISTRY", registry)


def register_globally() -> None:
    """For subprocesses: register the toy targets without monkeypatch (see ``conftest``-less use)."""
    for name, ns in (("toy-good", GOOD), ("toy-broken", BROKEN), ("toy-crashy", CRASHY), ("toy-model", MODEL)):
        register_target(name, lambda n=name, s=ns: Target(n, s, "0-toy"))
