"""Reference model of the approximate (predict-on-route) indexer and of the router's indexer choice.

**ApproxIndex** — Dynamo's pruned radix tree (``PruneManager`` + ``RadixTree``), with an explicit
integer clock.  State: a device :class:`~kvspec.model.radix.RadixIndex` and one
:class:`~kvspec.ttl.TtlEntry` per (worker, rank, block) it holds; the tree holds exactly the
blocks that have a timer.  The rules:

* **A routing decision** ``record_routing_decision(worker_id, dp_rank, local_hashes)`` stores the
  request's blocks as *one* Stored event under the root, ``E_i`` the router's chained sequence
  hash of ``local_hashes[:i+1]``, and sets each block's expiry to ``now + ttl`` (re-routing
  refreshes it).  Then, if the tree holds more than ``max_tree_size`` entries, it is pruned (below).
  Returns the pruned entries.  Why: with no KV events the router assumes a worker caches what it
  was sent, for a while.
* **Expiry.** ``advance(ticks)`` moves the clock; every entry with ``expiry <= now`` is removed
  from the tree and returned, in :func:`~kvspec.ttl.pop_order`.
* **Prune.** ``prune()``: when ``size() > max_tree_size``, the first ``size() - target`` entries in
  pop order are removed (``target = floor(max_tree_size * prune_target_ratio)``): earliest expiry
  first, the deepest block first among equal expiries.  Otherwise nothing happens.
* ``remove_worker`` / ``remove_worker_dp_rank`` drop the blocks *and* their timers.
* Queries and dumps are the radix index's (``find_matches``, ``dump_events``).

**RouterIndexer** — what a ``KvRouter`` indexes, by configuration (``use_kv_events``,
``router_ttl``, ``router_predicted_ttl``):

* ``use_kv_events=True``: an event-driven :class:`~kvspec.model.tiered.TieredIndex` (the
  *primary*), plus, when ``router_predicted_ttl`` is set, a *side* ApproxIndex with that TTL that
  only routing decisions write.  Without a side index routing decisions are not recorded.
* ``use_kv_events=False``: the primary *is* an ApproxIndex with TTL ``router_ttl``; the router
  consumes no KV events (``apply_event`` raises :class:`~kvspec.errors.InvalidArgument`).
* Both at once (no KV events *and* a predicted TTL) is refused with
  :class:`~kvspec.errors.InvalidConfiguration`.
* Queries: device scores are the per-worker **maximum** of the primary's and the side's scores.
  Lower tiers continue from the *primary's* device chains only: a worker known only to the side
  index is scored on the device tier but never anchors a lower-tier walk.  A lower tier's hits
  count only blocks beyond what the worker was already credited with (the merged device score,
  then the faster tiers): a block counts once, even when the prediction is longer than the
  event-driven chain that a host suffix continues.
* ``remove_worker`` / ``remove_worker_dp_rank`` reach the primary, its lower tiers and the side.
* ``dump_events`` dumps the primary only (the side index is never dumped).
"""

from __future__ import annotations

from collections.abc import Sequence

from kvspec import checks
from kvspec.errors import InvalidArgument
from kvspec.events import KvCacheEvent, Removed, RouterEvent, StorageTier, Stored, StoredBlock
from kvspec.hashing import sequence_hashes
from kvspec.model.radix import RadixIndex
from kvspec.model.tiered import TieredIndex
from kvspec.scores import LOWER_TIERS, LowerTierMatches, OverlapScores, TieredMatches
from kvspec.ttl import (DEFAULT_MAX_TREE_SIZE, DEFAULT_PRUNE_TARGET_RATIO, PruneConfig, TtlEntry,
                        check_router_config, pop_order)

__all__ = ["ApproxIndex", "RouterIndexer"]


class ApproxIndex:
    """A radix index written by routing decisions, whose entries expire or get pruned (module docs)."""

    def __init__(self, ttl: int, max_tree_size: int = DEFAULT_MAX_TREE_SIZE,
                 prune_target_ratio: float = DEFAULT_PRUNE_TARGET_RATIO) -> None:
        self.config = PruneConfig(ttl, max_tree_size, prune_target_ratio)
        self._tree = RadixIndex()
        self._entries: dict[tuple[int, int, int], TtlEntry] = {}  # (worker_id, dp_rank, E) -> timer
        self._now = 0

    # -- writes ----------------------------------------------------------------------------

    def record_routing_decision(self, worker_id: int, dp_rank: int, local_hashes: Sequence[int]) -> list[TtlEntry]:
        """Store the routed blocks under the root with expiry ``now + ttl``; prune if too big."""
        local_hashes = checks.routed_request(worker_id, dp_rank, local_hashes)
        if not local_hashes:
            return []
        hashes = sequence_hashes(local_hashes)
        stored = Stored(None, [StoredBlock(e, local) for e, local in zip(hashes, local_hashes)])
        self._tree.apply_event(worker_id, KvCacheEvent(0, stored, dp_rank))
        expiry = self._now + self.config.ttl
        for position, e in enumerate(hashes):
            self._entries[(worker_id, dp_rank, e)] = TtlEntry(worker_id, dp_rank, e, position, expiry)
        return self.prune()

    def advance(self, ticks: int) -> list[TtlEntry]:
        """Move the clock by ``ticks``; remove and return every entry with ``expiry <= now``."""
        self._now += checks.ticks(ticks)
        return self._drop([e for e in self._entries.values() if e.expiry <= self._now])

    def prune(self) -> list[TtlEntry]:
        """If ``size() > max_tree_size``, remove the first ``size() - target`` entries in pop order."""
        excess = self.size() - self.config.target_size()
        if self.size() <= self.config.max_tree_size or excess <= 0:
            return []
        return self._drop(sorted(self._entries.values(), key=pop_order)[:excess])

    def _drop(self, entries: list[TtlEntry]) -> list[TtlEntry]:
        entries = sorted(entries, key=pop_order)
        for entry in entries:
            del self._entries[(entry.worker_id, entry.dp_rank, entry.block_hash)]
            removed = KvCacheEvent(0, Removed([entry.block_hash]), entry.dp_rank)
            self._tree.apply_event(entry.worker_id, removed)
        return entries

    def remove_worker(self, worker_id: int) -> None:
        """Forget every rank of ``worker_id``: its blocks and their timers."""
        self._tree.remove_worker(worker_id)
        for key in [k for k in self._entries if k[0] == worker_id]:
            del self._entries[key]

    def remove_worker_dp_rank(self, worker_id: int, dp_rank: int) -> None:
        """Forget one rank of ``worker_id``: its blocks and their timers."""
        self._tree.remove_worker_dp_rank(worker_id, dp_rank)
        for key in [k for k in self._entries if k[:2] == (worker_id, dp_rank)]:
            del self._entries[key]

    # -- reads -----------------------------------------------------------------------------

    def find_matches(self, local_hashes: Sequence[int], early_exit: bool = False) -> OverlapScores:
        return self._tree.find_matches(local_hashes, early_exit)

    def dump_events(self) -> list[RouterEvent]:
        return self._tree.dump_events()

    def now(self) -> int:
        """The clock, in ticks since construction."""
        return self._now

    def size(self) -> int:
        """How many (worker, rank, block) entries the tree holds (Dynamo's ``current_size``)."""
        return len(self._entries)

    def entries(self) -> list[TtlEntry]:
        """Every live timer, in pop order."""
        return sorted(self._entries.values(), key=pop_order)


class RouterIndexer:
    """The indexes of one ``KvRouter``: primary, lower tiers, optional side ApproxIndex (module docs)."""

    def __init__(self, use_kv_events: bool = True, router_ttl: int = 120, router_predicted_ttl: int | None = None,
                 max_tree_size: int = DEFAULT_MAX_TREE_SIZE,
                 prune_target_ratio: float = DEFAULT_PRUNE_TARGET_RATIO) -> None:
        if not isinstance(use_kv_events, bool):
            raise InvalidArgument(f"use_kv_events must be a bool, got {use_kv_events!r}")
        check_router_config(use_kv_events, router_predicted_ttl)
        PruneConfig(router_ttl, max_tree_size, prune_target_ratio)
        self._primary: TieredIndex | None = TieredIndex() if use_kv_events else None
        ttl = router_predicted_ttl if use_kv_events else router_ttl
        self._approx = ApproxIndex(ttl, max_tree_size, prune_target_ratio) if ttl is not None else None
        self._now = 0

    def records_routing_decisions(self) -> bool:
        """Whether routing decisions write an index (a primary or a side ApproxIndex exists)."""
        return self._approx is not None

    # -- writes ----------------------------------------------------------------------------

    def apply_event(self, worker_id: int, event: KvCacheEvent, storage_tier: StorageTier = StorageTier.DEVICE) -> None:
        """A KV event goes to the primary (and its tiers); refused when the router uses no KV events."""
        if self._primary is None:
            raise InvalidArgument("this router uses no KV events (use_kv_events=False)")
        self._primary.apply_event(worker_id, event, storage_tier)

    def record_routing_decision(self, worker_id: int, dp_rank: int, local_hashes: Sequence[int]) -> list[TtlEntry]:
        """Write the decision to the ApproxIndex, if any; return what it pruned."""
        checks.routed_request(worker_id, dp_rank, local_hashes)
        if self._approx is None:
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
        """Same effect as :meth:`remove_worker` (every index, every rank)."""
        self.remove_worker(worker_id)

    # -- reads -----------------------------------------------------------------------------

    def _side_scores(self, local_hashes: Sequence[int], early_exit: bool) -> dict[tuple[int, int], int]:
        return dict(self._approx.find_matches(local_hashes, early_exit).scores) if self._approx is not None else {}

    def find_matches(self, local_hashes: Sequence[int], early_exit: bool = False) -> OverlapScores:
        """Device scores: per worker the maximum of the primary's and the ApproxIndex's."""
        scores = dict(self._primary.find_matches(local_hashes, early_exit).scores) if self._primary else {}
        for worker, score in self._side_scores(local_hashes, early_exit).items():
            scores[worker] = max(score, scores.get(worker, 0))
        return OverlapScores(scores, ())

    def find_matches_by_tier(self, local_hashes: Sequence[int]) -> TieredMatches:
        """Merged device scores; lower tiers walk the primary's chains and count only new blocks.

        A lower tier's hits for a worker are the blocks its walk reaches *beyond* what the worker
        was already credited with (the merged device score, then the faster tiers): when the side
        index's prediction is longer than the event-driven device chain, the primary's host
        suffix of that chain is not counted again.  A block counts once.
        """
        device = self.find_matches(local_hashes)
        if self._primary is None:
            return TieredMatches(device, {})
        tiered = self._primary.find_matches_by_tier(local_hashes)
        counted = dict(device.scores)  # blocks credited so far, per worker
        reached = dict(tiered.device.scores)  # where the primary's walk is, per worker
        lower = {}
        for tier in LOWER_TIERS:
            matches = tiered.lower_tier.get(tier)
            if matches is None:
                continue
            hits = {}
            for worker, found in matches.hits.items():
                reached[worker] = reached.get(worker, 0) + found
                hits[worker] = max(0, reached[worker] - counted.get(worker, 0))
                counted[worker] = max(counted.get(worker, 0), reached[worker])
            lower[tier] = LowerTierMatches(hits, matches.next_continuations)
        return TieredMatches(device, lower)

    def dump_events(self) -> list[RouterEvent]:
        """The primary's dump (an ApproxIndex primary included); a side index is never dumped."""
        return self._primary.dump_events() if self._primary is not None else self._approx.dump_events()

    def now(self) -> int:
        return self._now

    def approx_entries(self) -> list[TtlEntry]:
        """The ApproxIndex's live timers (empty without one)."""
        return self._approx.entries() if self._approx is not None else []
