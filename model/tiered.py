"""Reference model of the tiered index: a device :class:`RadixIndex` plus one index per lower tier.

Workers offload blocks from GPU memory (``device``) to pinned host memory, local disk or an
external store.  The router keeps one index per tier and answers "how many leading blocks of this
request can each worker serve, from which tier" (``docs/upstream.md`` R7).  The rules:

* **Routing events.**  A device event goes to the device index (with its errors).  A Stored or
  Removed event for ``host_pinned``, ``disk`` or ``external`` goes to that tier's index, which is
  *allocated by its first event* and listed in every answer from then on.  A ``Cleared`` event,
  whatever its tier, clears that worker rank in the device index and every allocated lower tier;
  ``remove_worker``, ``remove_worker_dp_rank`` and ``clear_all_blocks`` reach every tier too.
* **Lower-tier blocks.**  A lower tier holds the same kind of map as the device,
  ``held[w][E] = (parent E or None, L)``, but accepts any parent: an offloaded suffix names its
  parent in a *faster* tier (a host block under the device block before it).  Removals of blocks
  the tier does not hold are ignored (Dynamo logs and drops lower-tier errors).  A cycle
  (parent among the blocks, a repeated hash) is still :class:`InvalidBlockSequence`, on every
  tier, and leaves the state unchanged.
* **find_matches_by_tier.**  The device scores come first.  Each device-matched worker continues
  from where its device chain ended (the same position and the same external hashes).  The lower
  tiers are then walked in order host_pinned, disk, external (unallocated tiers skipped): a worker
  absent so far joins at the root only in a tier where it holds a root block matching the query's
  first hash; each tier counts the blocks that extend the worker's continuation (its ``hits``,
  zero included) and passes the extended continuation on.  So a block counts once — a host copy of
  a device block is never counted again — and the total is device run, then host run, then disk
  run, then external run, in that order.
"""

from __future__ import annotations

from collections.abc import Sequence

from kvspec import checks
from kvspec.events import Cleared, KvCacheEvent, Removed, RouterEvent, StorageTier, Stored
from kvspec.model.radix import Blocks, RadixIndex, anchored_events, chain_blocks, longest_chains
from kvspec.scores import LOWER_TIERS, Continuation, LowerTierMatches, OverlapScores, TieredMatches

__all__ = ["TieredIndex"]


class TieredIndex:
    """Device index plus lazily allocated lower-tier indexes (see module docs)."""

    def __init__(self) -> None:
        self._device = RadixIndex()
        #: tier -> worker (id, rank) -> blocks; a tier is present once it got its first event
        self._lower: dict[StorageTier, dict[tuple[int, int], Blocks]] = {}

    # -- events ----------------------------------------------------------------------------

    def apply_event(self, worker_id: int, event: KvCacheEvent, storage_tier: StorageTier = StorageTier.DEVICE) -> None:
        """Route one event to the tier it names (``Cleared`` reaches every tier)."""
        storage_tier = checks.index_event(worker_id, event, KvCacheEvent, storage_tier, StorageTier)
        worker = (worker_id, event.dp_rank)
        data = event.data
        if isinstance(data, Cleared):
            self._device.apply_event(worker_id, event)
            for tier in self._lower.values():
                tier.pop(worker, None)
            return
        if storage_tier is StorageTier.DEVICE:
            self._device.apply_event(worker_id, event)
            return
        tier = self._lower.setdefault(storage_tier, {})
        if isinstance(data, Stored) and data.blocks:
            chain_blocks(tier.setdefault(worker, {}), data)
        elif isinstance(data, Removed):
            blocks = tier.get(worker, {})
            for h in data.block_hashes:
                blocks.pop(h, None)  # unknown hashes are ignored in lower tiers
            if worker in tier and not blocks:
                del tier[worker]

    def remove_worker(self, worker_id: int) -> None:
        checks.worker_id("worker_id", worker_id)
        self._device.remove_worker(worker_id)
        for tier in self._lower.values():
            for worker in [w for w in tier if w[0] == worker_id]:
                del tier[worker]

    def remove_worker_dp_rank(self, worker_id: int, dp_rank: int) -> None:
        checks.worker(worker_id, dp_rank)
        self._device.remove_worker_dp_rank(worker_id, dp_rank)
        for tier in self._lower.values():
            tier.pop((worker_id, dp_rank), None)

    def clear_all_blocks(self, worker_id: int) -> None:
        self.remove_worker(worker_id)

    # -- queries ---------------------------------------------------------------------------

    def find_matches(self, local_hashes: Sequence[int], early_exit: bool = False) -> OverlapScores:
        """Device-tier scores only (the :class:`RadixIndex` query)."""
        return self._device.find_matches(local_hashes, early_exit)

    def find_matches_by_tier(self, local_hashes: Sequence[int]) -> TieredMatches:
        """Device scores, then each allocated lower tier's extension hits (see module docs)."""
        local_hashes = checks.query(local_hashes)
        continuations = self._device.match_details(local_hashes)
        device = OverlapScores({w: c.position for w, c in continuations.items()}, ())
        lower: dict[StorageTier, LowerTierMatches] = {}
        for tier_name in LOWER_TIERS:
            tier = self._lower.get(tier_name)
            if tier is None:
                continue
            for worker, blocks in tier.items():
                holds_root = any(p is None and l == local_hashes[0] for p, l in blocks.values()) if local_hashes else False
                if holds_root and worker not in continuations:
                    continuations[worker] = Continuation.root()
            hits, following = {}, {}
            for worker, start in continuations.items():
                reached = longest_chains(tier.get(worker, {}), local_hashes, start)
                hits[worker] = reached.position - start.position
                following[worker] = reached
            lower[tier_name] = LowerTierMatches(hits, following)
            continuations = following
        return TieredMatches(device, lower)

    def dump_events(self) -> list[RouterEvent]:
        """The device dump, then every lower-tier block as a single-block Stored event of its tier."""
        events = self._device.dump_events()
        for tier_name in LOWER_TIERS:
            tier = self._lower.get(tier_name, {})
            for worker in sorted(tier):
                events += anchored_events(worker, tier[worker], tier_name, False, len(events))
        return events
