"""Refcount event filter (Dynamo's ``EventDedupFilter``): one flat counter keyed by rank, tier, hash.

Same observable behaviour as the reference model (stores pass and count, removes pass at zero,
clears pass and forget everything).  Invariant (``_check``, O(n)): every count is positive.
``apply`` costs O(blocks in the event); ``Cleared`` O(1) (a new dict).
"""

from __future__ import annotations

from kvspec.errors import InvalidArgument
from kvspec.events import Cleared, KvCacheEvent, Removed, StorageTier, Stored

__all__ = ["EventDedupFilter"]


class EventDedupFilter:
    def __init__(self) -> None:
        self._counts: dict[tuple[int, StorageTier, int], int] = {}

    def apply(self, event: KvCacheEvent, tier: StorageTier = StorageTier.DEVICE) -> KvCacheEvent | None:
        if not isinstance(event, KvCacheEvent):
            raise InvalidArgument(f"expected a KvCacheEvent, got {event!r}")
        if not isinstance(tier, StorageTier):
            raise InvalidArgument(f"expected a StorageTier, got {tier!r}")
        data, rank, counts = event.data, event.dp_rank, self._counts
        if isinstance(data, Cleared):
            self._counts = {}
            return event
        if isinstance(data, Stored):
            for block in data.blocks:
                key = (rank, tier, block.block_hash)
                counts[key] = counts.get(key, 0) + 1
            return event
        passed = []
        for h in data.block_hashes:
            key = (rank, tier, h)
            n = counts.get(key)
            if n is None or n == 1:
                counts.pop(key, None)
                passed.append(h)
            else:
                counts[key] = n - 1
        if not passed:
            return None
        return event if len(passed) == len(data.block_hashes) else KvCacheEvent(event.event_id, Removed(passed), rank)

    def count(self, block_hash: int, dp_rank: int = 0, tier: StorageTier = StorageTier.DEVICE) -> int:
        return self._counts.get((dp_rank, tier, block_hash), 0)

    def _check(self) -> None:
        assert all(n > 0 for n in self._counts.values()), "a count reached zero without being forgotten"
