"""Reference model of a refcount event filter: Dynamo's ``EventDedupFilter`` (ai-dynamo/dynamo#8012).

vLLM publishes one ``BlockStored`` per cached physical copy and one ``BlockRemoved`` per evicted
copy, so a hash cached twice is removed twice.  Dynamo's KV-event publisher runs every worker's
events through a per-hash reference count before they reach the router.  Rules (upstream's):

1. **Stores always pass**, unchanged; each stored hash's count goes up by one, per
   ``(dp_rank, storage tier)`` (the same hash on two ranks is two blocks).
2. **A remove passes only the hashes whose count drops to zero** (they are forgotten); hashes still
   counted are dropped from the event; a hash never counted passes (defensively).  A remove left
   with no hash is dropped whole.
3. **A clear passes and forgets every count, of every rank and tier** (the router wipes the whole
   worker on ``Cleared``).

It therefore repairs the per-copy *remove* stream but forwards duplicate *stores* — which a router
that counts stores (finding F2) must then see removed as many times.

>>> from kvspec.events import KvCacheEvent, Removed, Stored, StoredBlock
>>> f = EventDedupFilter()
>>> f.apply(KvCacheEvent(0, Stored(None, [StoredBlock(7, 1)]))) is not None
True
>>> f.apply(KvCacheEvent(1, Stored(None, [StoredBlock(7, 1)]))) is not None
True
>>> f.apply(KvCacheEvent(2, Removed([7]))) is None
True
>>> f.apply(KvCacheEvent(3, Removed([7]))).data
Removed(block_hashes=(7,))
"""

from __future__ import annotations

import attrs

from kvspec.errors import InvalidArgument
from kvspec.events import Cleared, KvCacheEvent, Removed, StorageTier, Stored

__all__ = ["EventDedupFilter"]


def check_event(event, tier) -> None:
    if not isinstance(event, KvCacheEvent):
        raise InvalidArgument(f"expected a KvCacheEvent, got {event!r}")
    if not isinstance(tier, StorageTier):
        raise InvalidArgument(f"expected a StorageTier, got {tier!r}")


class EventDedupFilter:
    """Per-(dp rank, tier) reference counts of stored hashes; see the module rules."""

    def __init__(self) -> None:
        self.counts: dict[tuple[int, StorageTier], dict[int, int]] = {}

    def apply(self, event: KvCacheEvent, tier: StorageTier = StorageTier.DEVICE) -> KvCacheEvent | None:
        """The event to forward (``None``: dropped)."""
        check_event(event, tier)
        data = event.data
        if isinstance(data, Cleared):
            self.counts.clear()
            return event
        counts = self.counts.setdefault((event.dp_rank, tier), {})
        if isinstance(data, Stored):
            for block in data.blocks:
                counts[block.block_hash] = counts.get(block.block_hash, 0) + 1
            return event
        passed = []
        for h in data.block_hashes:
            if h not in counts:
                passed.append(h)
                continue
            counts[h] -= 1
            if counts[h] == 0:
                del counts[h]
                passed.append(h)
        return attrs.evolve(event, data=Removed(passed)) if passed else None

    def count(self, block_hash: int, dp_rank: int = 0, tier: StorageTier = StorageTier.DEVICE) -> int:
        """How many stores of ``block_hash`` are not yet matched by removes."""
        return self.counts.get((dp_rank, tier), {}).get(block_hash, 0)
