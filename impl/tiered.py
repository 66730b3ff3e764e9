"""Optimized tiered index: the device :class:`RadixIndex` plus one :class:`BlockTable` per lower tier.

The device part is the lane trie of :mod:`kvspec.impl.trie` (queries cost the nodes on the path,
not the blocks held): ``find_matches`` is exactly the device query, and ``find_matches_by_tier``
starts from the device's continuations (``match_details``: the walk plus O(workers x log path)).

Contract: ``kvspec.model.tiered``.  Lower tiers are allocated by their first Stored/Removed event;
they accept any parent (an offloaded suffix hangs under a block of a faster tier) and ignore
removals of blocks they do not hold; a cycle is :class:`InvalidBlockSequence` on every tier.

``find_matches_by_tier`` seeds the lower tiers with the device walk's continuations (position and
chain-end hashes per device-matched worker), adds, per tier, the workers holding a root block with
the query's first local hash (``edges[(None, L0)]``, no scan over workers), and runs one
:meth:`BlockTable.walk` per allocated tier over all continuations at once.  Cost: the device walk
plus, per allocated tier, ``O(workers carried + hits)``.

Invariant (``_check``): every table passes its own check; ``_lower`` holds only lower tiers.
"""

from __future__ import annotations

from collections.abc import Sequence

from kvspec import checks
from kvspec.events import Cleared, KvCacheEvent, Removed, RouterEvent, StorageTier, Stored
from kvspec.impl.radix import BlockTable, RadixIndex
from kvspec.impl.trie import block_hash_of
from kvspec.scores import LOWER_TIERS, Continuation, LowerTierMatches, OverlapScores, TieredMatches


class TieredIndex:
    """Device index plus lazily allocated lower-tier edge tables."""

    def __init__(self) -> None:
        self._device = RadixIndex()
        self._lower: dict[StorageTier, BlockTable] = {}

    def apply_event(self, worker_id: int, event: KvCacheEvent, storage_tier: StorageTier = StorageTier.DEVICE) -> None:
        storage_tier = checks.index_event(worker_id, event, KvCacheEvent, storage_tier, StorageTier)
        data = event.data
        if isinstance(data, Cleared):
            self._device._apply(worker_id, event, None)
            for table in self._lower.values():
                table.drop_worker((worker_id, event.dp_rank))
            return
        if storage_tier is StorageTier.DEVICE:  # checked above: the device index need not again
            names = list(map(block_hash_of, data.blocks)) if isinstance(data, Stored) else None
            self._device._apply(worker_id, event, names)
            return
        table = self._lower.get(storage_tier)
        if table is None:
            table = self._lower[storage_tier] = BlockTable()
        worker = (worker_id, event.dp_rank)
        if isinstance(data, Stored):
            table.store_chain(worker, data.parent_hash, data.blocks)
        elif isinstance(data, Removed):
            for h in data.block_hashes:
                table.detach(worker, h)  # unknown hashes are ignored in lower tiers

    def remove_worker(self, worker_id: int) -> None:
        checks.worker_id("worker_id", worker_id)
        self._device.remove_worker(worker_id)
        for table in self._lower.values():
            table.drop_worker_id(worker_id)

    def remove_worker_dp_rank(self, worker_id: int, dp_rank: int) -> None:
        checks.worker(worker_id, dp_rank)
        self._device.remove_worker_dp_rank(worker_id, dp_rank)
        for table in self._lower.values():
            table.drop_worker((worker_id, dp_rank))

    def clear_all_blocks(self, worker_id: int) -> None:
        self.remove_worker(worker_id)

    def find_matches(self, local_hashes: Sequence[int], early_exit: bool = False) -> OverlapScores:
        return self._device.find_matches(local_hashes, early_exit)

    def find_matches_by_tier(self, local_hashes: Sequence[int]) -> TieredMatches:
        local_hashes = checks.query(local_hashes)
        continuations = self._device.match_details(local_hashes)
        device = OverlapScores({w: c.position for w, c in continuations.items()}, ())
        lower: dict[StorageTier, LowerTierMatches] = {}
        for tier in LOWER_TIERS:
            table = self._lower.get(tier)
            if table is None:
                continue
            self._seed(table, local_hashes, continuations)
            reached = table.walk(local_hashes, continuations)
            hits = {w: reached[w].position - start.position for w, start in continuations.items()}
            lower[tier] = LowerTierMatches(hits, reached)
            continuations = reached
        return TieredMatches(device, lower)

    @staticmethod
    def _seed(table, local_hashes: Sequence[int], continuations: dict) -> None:
        """Workers absent so far enter a lower tier at the root, and only if they hold its root block."""
        if local_hashes:
            for worker in table.root_holders(local_hashes[0]):
                if worker not in continuations:
                    continuations[worker] = Continuation.root()

    def dump_events(self) -> list[RouterEvent]:
        events = self._device.dump_events()
        for tier in LOWER_TIERS:
            table = self._lower.get(tier)
            if table is not None:
                events += table.dump(tier, False, len(events))
        return events

    def _check(self) -> None:
        self._device._check()
        for tier, table in self._lower.items():
            assert tier is not StorageTier.DEVICE
            table._check()
