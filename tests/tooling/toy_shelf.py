"""Toy classes for the trace/replay/report tests (no Hypothesis import: the generated pytest files
run against these namespaces with Hypothesis blocked).  See ``toy_machine`` for the machine."""

from __future__ import annotations

import types

from kvspec.errors import InvalidArgument
from kvspec.events import KvCacheEvent, Removed, StorageTier, Stored, StoredBlock
from kvspec.protocol import FullBlock


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


class SloppyShelf(Shelf):
    """Agrees on every observable, but its bookkeeping of ``capacity`` drifts (caught by ``_check``)."""

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self._real_capacity = capacity

    def put(self, block: FullBlock) -> int:
        if block.hash in self.blocks or len(self.blocks) >= self._real_capacity:
            raise InvalidArgument("full or duplicate")
        self.blocks.append(block.hash)
        self._emit(Stored(None, (StoredBlock(block.hash, block.hash % 7),)))
        return len(self.blocks)

    def take(self, block: FullBlock) -> int:
        out = super().take(block)
        self.capacity -= 1  # planted: not observable through the API
        return out

    def _check(self) -> None:
        assert self.capacity == self._real_capacity, f"capacity drifted to {self.capacity}"


MODEL = types.SimpleNamespace(Shelf=Shelf)
GOOD = types.SimpleNamespace(Shelf=GoodShelf)
BROKEN = types.SimpleNamespace(Shelf=BrokenShelf)
CRASHY = types.SimpleNamespace(Shelf=CrashyShelf)

SLOPPY = types.SimpleNamespace(Shelf=SloppyShelf)
