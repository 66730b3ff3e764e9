"""Optimized approximate (predict-on-route) indexer: a lazy timer heap over the shared edge table.

Same contract as ``kvspec.model.approx`` (read it for the rules).  Structure of
:class:`TimerHeap`, the part that is an implementation concern::

    timers[(worker_id, dp_rank, E)] -> (expiry, position)   # the truth: one live timer per block
    heap: [(pop key, (worker_id, dp_rank, E))]             # heapq, pop key = kvspec.ttl.pop_order
    by_worker[(worker_id, dp_rank)] -> {E}                  # remove_worker without a full scan

Re-inserting a key pushes a fresh heap item and leaves the old one *stale* (its expiry no longer
matches ``timers``); stale items are skipped when popped and swept by a rebuild when the heap
grows past ``REBUILD_FACTOR`` times the live timers, as Dynamo's ``PruneManager`` does.

Invariants (``_check``, O(n log n)): every live timer has a heap item with its exact pop key;
the heap has the heap property; ``len(heap) <= REBUILD_FACTOR * len(timers) + batch``;
``by_worker`` lists exactly the live keys; the tree (a :class:`~kvspec.impl.radix.BlockTable`)
holds exactly the blocks that have a timer.

Complexity: a routing decision of ``k`` blocks is ``O(k log n)`` (plus an amortized rebuild);
``advance`` is ``O((expired + stale popped) log n)``; ``prune`` is ``O((pruned + stale) log n)``;
``remove_worker`` is ``O(blocks of that worker)`` (its heap items go stale); ``size`` is ``O(1)``;
``entries`` is ``O(n log n)`` (an observer, not a hot path).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from kvspec import checks
from kvspec.errors import InvalidArgument
from kvspec.events import KvCacheEvent, RouterEvent, StorageTier, StoredBlock
from kvspec.hashing import sequence_hashes
from kvspec.impl.radix import BlockTable
from kvspec.impl.tiered import TieredIndex
from kvspec.scores import LowerTierMatches, OverlapScores, TieredMatches
from kvspec.ttl import DEFAULT_MAX_TREE_SIZE, DEFAULT_PRUNE_TARGET_RATIO, PruneConfig, TtlEntry, check_router_config

__all__ = ["ApproxIndex", "RouterIndexer", "TimerHeap"]

Key = tuple[int, int, int]  # (worker_id, dp_rank, E)
#: rebuild the heap once it holds this many items per live timer (Dynamo uses 50)
REBUILD_FACTOR = 50


class TimerHeap:
    """Live timers plus a lazily cleaned min-heap in pop order (see module docs)."""

    __slots__ = ("timers", "heap", "by_worker")

    def __init__(self) -> None:
        self.timers: dict[Key, tuple[int, int]] = {}
        self.heap: list[tuple[tuple[int, int, int, int, int], Key]] = []
        self.by_worker: dict[tuple[int, int], set[int]] = {}

    @staticmethod
    def _order(key: Key, expiry: int, position: int) -> tuple[int, int, int, int, int]:
        worker_id, dp_rank, e = key
        return (expiry, -position, -e, -worker_id, -dp_rank)

    def insert(self, key: Key, expiry: int, position: int) -> None:
        """Set (or refresh) one timer: O(log n)."""
        self.timers[key] = (expiry, position)
        self.by_worker.setdefault(key[:2], set()).add(key[2])
        heapq.heappush(self.heap, (self._order(key, expiry, position), key))

    def maybe_rebuild(self) -> None:
        """Sweep stale items when they dominate the heap: O(n), amortized over the pushes."""
        if len(self.heap) > REBUILD_FACTOR * max(1, len(self.timers)):
            self.heap = [(self._order(k, *v), k) for k, v in self.timers.items()]
            heapq.heapify(self.heap)

    def _live(self, item: tuple[tuple[int, int, int, int, int], Key]) -> bool:
        order, key = item
        timer = self.timers.get(key)
        return timer is not None and timer[0] == order[0] and -timer[1] == order[1]

    def _take(self, key: Key) -> TtlEntry:
        expiry, position = self.timers.pop(key)
        es = self.by_worker[key[:2]]
        es.discard(key[2])
        if not es:
            del self.by_worker[key[:2]]
        return TtlEntry(key[0], key[1], key[2], position, expiry)

    def pop_expired(self, now: int) -> list[TtlEntry]:
        """Every live timer with ``expiry <= now``, in pop order: O((expired + stale) log n)."""
        out = []
        heap = self.heap
        while heap and heap[0][0][0] <= now:
            item = heapq.heappop(heap)
            if self._live(item):
                out.append(self._take(item[1]))
        return out

    def pop(self, count: int) -> list[TtlEntry]:
        """The first ``count`` live timers in pop order: O((count + stale) log n)."""
        out = []
        heap = self.heap
        while len(out) < count and heap:
            item = heapq.heappop(heap)
            if self._live(item):
                out.append(self._take(item[1]))
        return out

    def drop_worker(self, worker: tuple[int, int]) -> None:
        """Forget one rank's timers (their heap items go stale): O(its timers)."""
        for e in self.by_worker.pop(worker, ()):
            del self.timers[(*worker, e)]

    def _check(self) -> None:
        for i in range(1, len(self.heap)):
            assert self.heap[(i - 1) // 2] <= self.heap[i], "heap property violated"
        items = {(order, key) for order, key in self.heap}
        for key, (expiry, position) in self.timers.items():
            assert (self._order(key, expiry, position), key) in items, f"live timer {key} has no heap item"
            assert key[2] in self.by_worker.get(key[:2], ()), f"{key} missing from by_worker"
        listed = sum(len(es) for es in self.by_worker.values())
        assert listed == len(self.timers), "by_worker and timers disagree in size"
        assert all(self.by_worker.values()), "empty by_worker set kept"


class ApproxIndex:
    """TTL- and size-pruned radix index over a :class:`BlockTable` (contract: ``kvspec.model.approx``)."""

    def __init__(self, ttl: int, max_tree_size: int = DEFAULT_MAX_TREE_SIZE,
                 prune_target_ratio: float = DEFAULT_PRUNE_TARGET_RATIO) -> None:
        self.config = PruneConfig(ttl, max_tree_size, prune_target_ratio)
        self._table = BlockTable()
        self._timers = TimerHeap()
        self._now = 0

    def record_routing_decision(self, worker_id: int, dp_rank: int, local_hashes: Sequence[int]) -> list[TtlEntry]:
        """O(k log n) for k blocks, plus the prune it may trigger."""
        local_hashes = checks.routed_request(worker_id, dp_rank, local_hashes)
        if not local_hashes:
            return []
        hashes = sequence_hashes(local_hashes)
        worker = (worker_id, dp_rank)
        self._table.store_chain(worker, None, [StoredBlock(e, local) for e, local in zip(hashes, local_hashes)])
        expiry = self._now + self.config.ttl
        for position, e in enumerate(hashes):
            self._timers.insert((worker_id, dp_rank, e), expiry, position)
        self._timers.maybe_rebuild()
        return self.prune()

    def advance(self, ticks: int) -> list[TtlEntry]:
        self._now += checks.ticks(ticks)
        return self._detach(self._timers.pop_expired(self._now))

    def prune(self) -> list[TtlEntry]:
        size = len(self._timers.timers)
        if size <= self.config.max_tree_size:
            return []
        return self._detach(self._timers.pop(size - self.config.target_size()))

    def _detach(self, entries: list[TtlEntry]) -> list[TtlEntry]:
        for entry in entries:
            self._table.detach((entry.worker_id, entry.dp_rank), entry.block_hash)
        return entries

    def remove_worker(self, worker_id: int) -> None:
        for rank in list(self._table.ranks.get(worker_id, ())):
            self.remove_worker_dp_rank(worker_id, rank)

    def remove_worker_dp_rank(self, worker_id: int, dp_rank: int) -> None:
        self._table.drop_worker((worker_id, dp_rank))
        self._timers.drop_worker((worker_id, dp_rank))

    def find_matches(self, local_hashes: Sequence[int], early_exit: bool = False) -> OverlapScores:
        return OverlapScores(self._table.scores(local_hashes, early_exit), ())

    def dump_events(self) -> list[RouterEvent]:
        return self._table.dump(StorageTier.DEVICE, True, 0)

    def now(self) -> int:
        return self._now

    def size(self) -> int:
        return len(self._timers.timers)

    def entries(self) -> list[TtlEntry]:
        out = [TtlEntry(k[0], k[1], k[2], position, expiry) for k, (expiry, position) in self._timers.timers.items()]
        return sorted(out, key=lambda e: TimerHeap._order((e.worker_id, e.dp_rank, e.block_hash), e.expiry, e.position))

    def _check(self) -> None:
        self._table._check()
        self._timers._check()
        held = {(w[0], w[1], e) for w, blocks in self._table.held.items() for e in blocks}
        assert held == set(self._timers.timers), "tree blocks and timers disagree"


class RouterIndexer:
    """Primary (event-driven or approximate) plus optional side ApproxIndex (contract: ``kvspec.model.approx``)."""

    def __init__(self, use_kv_events: bool = True, router_ttl: int = 120, router_predicted_ttl: int | None = None,
                 max_tree_size: int = DEFAULT_MAX_TREE_SIZE,
                 prune_target_ratio: float = DEFAULT_PRUNE_TARGET_RATIO) -> None:
        if not isinstance(use_kv_events, bool):
            raise InvalidArgument(f"use_kv_events must be a bool, got {use_kv_events!r}")
        check_router_config(use_kv_events, router_predicted_ttl)
        PruneConfig(router_ttl, max_tree_size, prune_target_ratio)
        self._primary = TieredIndex() if use_kv_events else None
        ttl = router_predicted_ttl if use_kv_events else router_ttl
        self._approx = ApproxIndex(ttl, max_tree_size, prune_target_ratio) if ttl is not None else None
        self._now = 0

    def records_routing_decisions(self) -> bool:
        return self._approx is not None

    def apply_event(self, worker_id: int, event: KvCacheEvent, storage_tier: StorageTier = StorageTier.DEVICE) -> None:
        if self._primary is None:
            raise InvalidArgument("this router uses no KV events (use_kv_events=False)")
        self._primary.apply_event(worker_id, event, storage_tier)

    def record_routing_decision(self, worker_id: int, dp_rank: int, local_hashes: Sequence[int]) -> list[TtlEntry]:
        if self._approx is None:
            checks.routed_request(worker_id, dp_rank, local_hashes)
            return []
        return self._approx.record_routing_decision(worker_id, dp_rank, local_hashes)

    def advance(self, ticks: int) -> list[TtlEntry]:
        self._now += checks.ticks(ticks)
        return self._approx.advance(ticks) if self._approx is not None else []

    def prune(self) -> list[TtlEntry]:
        return self._approx.prune() if self._approx is not None else []

    def remove_worker(self, worker_id: int) -> None:
        if self._primary is not None:
            self._primary.remove_worker(worker_id)
        if self._approx is not None:
            self._approx.remove_worker(worker_id)

    def remove_worker_dp_rank(self, worker_id: int, dp_rank: int) -> None:
        if self._primary is not None:
            self._primary.remove_worker_dp_rank(worker_id, dp_rank)
        if self._approx is not None:
            self._approx.remove_worker_dp_rank(worker_id, dp_rank)

    def clear_all_blocks(self, worker_id: int) -> None:
        self.remove_worker(worker_id)

    def find_matches(self, local_hashes: Sequence[int], early_exit: bool = False) -> OverlapScores:
        scores = dict(self._primary.find_matches(local_hashes, early_exit).scores) if self._primary else {}
        if self._approx is not None:
            for worker, score in self._approx.find_matches(local_hashes, early_exit).scores.items():
                if score > scores.get(worker, 0):
                    scores[worker] = score
        return OverlapScores(scores, ())

    def find_matches_by_tier(self, local_hashes: Sequence[int]) -> TieredMatches:
        """O(primary walk + side walk + workers matched): lower-tier hits beyond what was credited."""
        device = self.find_matches(local_hashes)
        if self._primary is None:
            return TieredMatches(device, {})
        tiered = self._primary.find_matches_by_tier(local_hashes)
        if self._approx is None:
            return TieredMatches(device, tiered.lower_tier)
        counted = dict(device.scores)
        reached = dict(tiered.device.scores)
        lower = {}
        for tier, matches in tiered.lower_tier.items():  # allocated tiers, fastest first
            hits = {}
            for worker, found in matches.hits.items():
                at = reached.get(worker, 0) + found
                reached[worker] = at
                before = counted.get(worker, 0)
                hits[worker] = at - before if at > before else 0
                if at > before:
                    counted[worker] = at
            lower[tier] = LowerTierMatches(hits, matches.next_continuations)
        return TieredMatches(device, lower)

    def dump_events(self) -> list[RouterEvent]:
        return self._primary.dump_events() if self._primary is not None else self._approx.dump_events()

    def now(self) -> int:
        return self._now

    def approx_entries(self) -> list[TtlEntry]:
        return self._approx.entries() if self._approx is not None else []

    def _check(self) -> None:
        if self._primary is not None and hasattr(self._primary, "_check"):
            self._primary._check()
        if self._approx is not None:
            self._approx._check()
