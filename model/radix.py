"""Reference model of the device-tier prefix index (Dynamo's ``RadixTree``): the intended contract.

State: for every worker ``w = (worker_id, dp_rank)`` a map of the blocks it holds,
``held[w][E] = (parent E or None, L)`` — the block's external hash ``E``, the external hash of the
block before it, and its local (token) hash ``L``.  That is all; there is no tree.  The rules
(``docs/decisions.md`` D3):

* **Score.**  A worker's score for a query ``[L0, L1, ...]`` is the length of the longest chain
  ``E0, E1, ..., Ek-1`` of blocks it holds with ``held[w][E0] == (None, L0)`` and
  ``held[w][Ei] == (Ei-1, Li)``: a root-anchored chain whose local hashes spell the query's prefix.
  Workers scoring 0 are left out.  Why: a worker can reuse exactly the KV of the leading blocks
  it holds contiguously from the start of the sequence.
* **Stored** ``(parent, blocks)`` chains ``blocks`` one after the other under ``parent`` (the root
  when ``None``).  The parent must be held by the *same* worker and rank
  (:class:`ParentBlockNotFound`); a parent that is one of the stored blocks, or a block list that
  names one external hash twice, would make a cycle (:class:`InvalidBlockSequence`).  Storing an
  ``E`` the worker already holds re-files it under its new parent and local hash (a map).
* **Removed** drops the named blocks only — **no cascade**: descendants stay held, unreachable
  behind the hole, and count again as soon as the hole is stored again.  A name the worker does
  not hold raises :class:`BlockNotFound` *after* the rest of the event applied (Dynamo's
  documented behaviour, ``docs/decisions.md`` D4).  An event names a set: a repeated name is not an error.
* **Cleared** drops every block of that worker *and rank*; ``remove_worker`` and
  ``clear_all_blocks`` drop every rank of a worker id, ``remove_worker_dp_rank`` one rank.  None of
  these ever fails.
* **early_exit.**  Once exactly one worker is still matching, the walk stops: that worker's score
  becomes the depth at which it became the only one (it is the best candidate anyway).  Dynamo's
  compressed tree only checks at node boundaries, so its early-exit scores lie between that depth
  and the full score (``docs/upstream.md`` R4).

Every error other than :class:`BlockNotFound` leaves the state exactly as it was: events are
validated before anything changes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from kvspec import checks
from kvspec.errors import BlockNotFound, ParentBlockNotFound
from kvspec.events import Cleared, KvCacheEvent, Removed, RouterEvent, StorageTier, Stored, StoredBlock
from kvspec.scores import Continuation, OverlapScores

__all__ = ["Blocks", "RadixIndex", "anchored_events", "chain_blocks", "longest_chains"]

#: ``E -> (parent E or None, L)``: the blocks one worker (rank) holds
Blocks = dict[int, tuple[int | None, int]]


def longest_chains(blocks: Blocks, query: Sequence[int], start: Continuation) -> Continuation:
    """Extend ``start`` as far as ``blocks`` allow along ``query``; return where the chains end.

    The walk keeps every block at the current depth that continues a chain (``frontier``): the
    next depth keeps the held blocks whose parent is in the frontier and whose local hash is the
    next query hash.  The result's ``position`` is the longest chain's end, and its ``anchors`` the
    blocks where chains of that length end.  When nothing extends ``start`` it is returned as is.
    (``hanging`` files every block under ``(parent, local hash)`` once, so the walk is linear.)
    """
    hanging: dict[tuple[int | None, int], list[int]] = {}
    for e, edge in blocks.items():
        hanging.setdefault(edge, []).append(e)
    frontier: set[int | None] = set(start.anchors) if start.position > 0 else {None}
    position = start.position
    while position < len(query):
        following = {e for parent in frontier for e in hanging.get((parent, query[position]), ())}
        if not following:
            break
        frontier = following
        position += 1
    if position == start.position:
        return start
    return Continuation(position, frontier)


def chain_blocks(blocks: Blocks, stored: Stored) -> None:
    """File each stored block under the one before it (the first under ``stored.parent_hash``)."""
    parent = stored.parent_hash
    for block in stored.blocks:
        blocks[block.block_hash] = (parent, block.tokens_hash)
        parent = block.block_hash


def anchored_events(worker: tuple[int, int], blocks: Blocks, tier: StorageTier, only_anchored: bool,
                    first_id: int) -> list[RouterEvent]:
    """One single-block Stored event per block, parents before children.

    With ``only_anchored`` only blocks reachable from the root through held blocks are listed (a
    Stored event cannot name a parent the worker does not hold); otherwise every block is listed,
    reachable ones first in root-to-leaf order.
    """
    worker_id, dp_rank = worker
    children: dict[int | None, list[int]] = {}
    for e, (parent, _) in blocks.items():
        children.setdefault(parent, []).append(e)
    order: list[int] = []
    seen: set[int] = set()
    frontier: deque[int | None] = deque([None])
    while frontier:  # breadth-first from the root, children in hash order
        parent = frontier.popleft()
        for e in sorted(children.get(parent, ())):
            if e not in seen:
                seen.add(e)
                order.append(e)
                frontier.append(e)
    if not only_anchored:
        order += sorted(e for e in blocks if e not in seen)
    events = []
    for offset, e in enumerate(order):
        parent, local = blocks[e]
        event = KvCacheEvent(first_id + offset, Stored(parent, [StoredBlock(e, local)]), dp_rank)
        events.append(RouterEvent(worker_id, event, tier))
    return events


class RadixIndex:
    """The device-tier index: per worker and rank, the set of blocks it holds (see module docs)."""

    def __init__(self) -> None:
        self._held: dict[tuple[int, int], Blocks] = {}

    # -- events ----------------------------------------------------------------------------

    def apply_event(self, worker_id: int, event: KvCacheEvent) -> None:
        """Apply one event published by ``worker_id`` (its rank is ``event.dp_rank``)."""
        checks.index_event(worker_id, event, KvCacheEvent)
        worker = (worker_id, event.dp_rank)
        data = event.data
        if isinstance(data, Stored):
            self._store(worker, data)
        elif isinstance(data, Removed):
            self._remove(worker, data.block_hashes)
        elif isinstance(data, Cleared):
            self._held.pop(worker, None)
        else:  # pragma: no cover - KvCacheEvent validates its payload
            raise AssertionError(f"unknown event data {data!r}")

    def _store(self, worker: tuple[int, int], stored: Stored) -> None:
        blocks = self._held.get(worker, {})
        if stored.parent_hash is not None and stored.parent_hash not in blocks:
            raise ParentBlockNotFound(f"worker {worker} does not hold parent block {stored.parent_hash}")
        if stored.blocks:
            chain_blocks(self._held.setdefault(worker, {}), stored)

    def _remove(self, worker: tuple[int, int], hashes: Iterable[int]) -> None:
        blocks = self._held.get(worker, {})
        missing = sorted({h for h in hashes if h not in blocks})
        for h in set(hashes):
            blocks.pop(h, None)  # no cascade: the descendants stay held
        if worker in self._held and not blocks:
            del self._held[worker]
        if missing:
            raise BlockNotFound(f"worker {worker} does not hold blocks {missing}")

    def remove_worker(self, worker_id: int) -> None:
        """Forget every rank of ``worker_id``."""
        checks.worker_id("worker_id", worker_id)
        for worker in [w for w in self._held if w[0] == worker_id]:
            del self._held[worker]

    def remove_worker_dp_rank(self, worker_id: int, dp_rank: int) -> None:
        """Forget one rank of ``worker_id``."""
        checks.worker(worker_id, dp_rank)
        self._held.pop((worker_id, dp_rank), None)

    def clear_all_blocks(self, worker_id: int) -> None:
        """Drop every block of every rank of ``worker_id`` (same effect as :meth:`remove_worker`)."""
        self.remove_worker(worker_id)

    # -- queries ---------------------------------------------------------------------------

    def match_details(self, local_hashes: Sequence[int]) -> dict[tuple[int, int], Continuation]:
        """For every worker with a score > 0: how far it matches and the blocks its chains end at."""
        local_hashes = checks.query(local_hashes)
        out = {}
        for worker, blocks in self._held.items():
            reached = longest_chains(blocks, local_hashes, Continuation.root())
            if reached.position > 0:
                out[worker] = reached
        return out

    def find_matches(self, local_hashes: Sequence[int], early_exit: bool = False) -> OverlapScores:
        """Each worker's score for ``local_hashes`` (see module docs, also for ``early_exit``)."""
        checks.query(local_hashes, early_exit)
        scores = {worker: c.position for worker, c in self.match_details(local_hashes).items()}
        if early_exit:
            for depth in range(1, max(scores.values(), default=0) + 1):
                still = [w for w, s in scores.items() if s >= depth]
                if len(still) == 1:
                    scores[still[0]] = depth
                    break
        return OverlapScores(scores, ())

    def dump_events(self) -> list[RouterEvent]:
        """Stored events that rebuild every match: per worker, its blocks reachable from the root.

        Blocks behind a hole are left out: they contribute to no match, and a Stored event could
        not name their missing parent.  Replaying the dump into a fresh index reproduces every
        :meth:`find_matches` result.
        """
        events: list[RouterEvent] = []
        for worker in sorted(self._held):
            events += anchored_events(worker, self._held[worker], StorageTier.DEVICE, True, len(events))
        return events
