"""Legacy mocker KV manager (HashCache + LRU), optimized: same interface as the model.

Structures and invariants (checked by :meth:`LegacyKvManager._check`):

* ``_active``: dict block -> refcount >= 1.  O(1) lookup/update.
* ``_inactive``: OrderedDict block -> None, in release order (oldest first).  Releasing appends
  (a block is never both active and inactive, so it is never already present); eviction is
  ``popitem(last=False)``; reactivation deletes by key.  All O(1).
* ``_refs`` == sum of ``_active`` values (kept incrementally, O(1) observer).
* ``len(_active) + len(_inactive) <= capacity``; the two key sets are disjoint.

Validation happens before any mutation, so a typed error leaves the manager unchanged.
"""

from __future__ import annotations

from collections import OrderedDict

from kvspec import checks
from kvspec.errors import BlockNotHeld, BlockStateError, UnknownPartialBlock
from kvspec.events import KvCacheEvent, Removed, Stored, StoredBlock
from kvspec.protocol import Deref, Destroy, FullBlock, PartialBlock, Promote, Use
from kvspec.sequence import PrefillCost, as_snapshot

__all__ = ["LegacyKvManager"]

_OPERATIONS = (Use, Destroy, Deref, Promote)  # the order of checks.operation's message
_unique_block = checks.exact((FullBlock, PartialBlock))


class LegacyKvManager:
    """The legacy (L0/L1) mocker manager.  ``process(op) -> bool``."""

    def __init__(self, capacity: int, block_size: int = 16, *, dp_rank: int = 0):
        checks.manager_options(capacity, block_size, dp_rank)
        self._capacity = capacity
        self._block_size = block_size
        self._dp_rank = dp_rank
        self._active: dict = {}
        self._inactive: OrderedDict = OrderedDict()
        self._refs = 0
        self._next_event_id = 0
        self._events: list[KvCacheEvent] = []

    def _publish(self, data) -> None:
        self._events.append(KvCacheEvent(self._next_event_id, data, self._dp_rank))
        self._next_event_id += 1

    def process(self, op) -> bool:
        kind = checks.operation("LegacyKvManager", op, _OPERATIONS)
        if kind is Use:
            return self._use(op)
        if kind is Deref:
            return self._deref(op)
        if kind is Promote:
            return self._promote(op)
        return self._destroy(op)

    def _use(self, op: Use) -> bool:
        blocks = op.blocks
        checks.use_lengths("LegacyKvManager", op, plhs_required=False)
        checks.use_parent("LegacyKvManager", op, allowed=False)
        lh = op.local_hashes
        active, inactive = self._active, self._inactive
        anchor = None
        stored: list[int] = []
        for block in blocks:
            count = active.get(block)
            if count is not None:
                active[block] = count + 1
            elif block in inactive:
                del inactive[block]
                active[block] = 1
            else:
                if len(active) + len(inactive) >= self._capacity:
                    if not inactive:
                        return False
                    victim, _ = inactive.popitem(last=False)
                    if type(victim) is FullBlock:
                        self._publish(Removed((victim.hash,)))
                active[block] = 1
                self._refs += 1
                if type(block) is FullBlock:
                    stored.append(block.hash)
                continue
            self._refs += 1
            if type(block) is FullBlock:
                anchor = block.hash
        if stored:
            n = len(stored)
            tail = lh[len(lh) - n:] if lh else (0,) * n
            self._publish(Stored(anchor, tuple(StoredBlock(h, t) for h, t in zip(stored, tail))))
        return True

    def _destroy(self, op: Destroy) -> bool:
        seen = set()
        for b in op.blocks:
            if b in seen or b not in self._active:
                raise BlockNotHeld(f"Destroy names a block that is not active: {b!r}")
            seen.add(b)
        removed = []
        for b in op.blocks:
            self._refs -= self._active.pop(b)
            if type(b) is FullBlock:
                removed.append(b.hash)
        if removed:
            self._publish(Removed(tuple(removed)))
        return True

    def _deref(self, op: Deref) -> bool:
        active = self._active
        for block in op.blocks:
            count = active.get(block)
            if count is None:
                continue
            self._refs -= 1
            if count == 1:
                del active[block]
                self._inactive[block] = None
            else:
                active[block] = count - 1
        return True

    def _promote(self, op: Promote) -> bool:
        partial = PartialBlock(op.uuid)
        count = self._active.get(partial)
        if count is None:
            raise UnknownPartialBlock(f"Promote: partial block {op.uuid} is not active")
        if count != 1:
            raise BlockStateError(f"Promote: partial block {op.uuid} is held {count} times")
        del self._active[partial]
        full = FullBlock(op.seq_hash)
        existing = self._active.get(full)
        if existing is not None:
            self._active[full] = existing + 1
        elif full in self._inactive:
            del self._inactive[full]
            self._active[full] = 1
        else:
            self._active[full] = 1
            local = op.local_hash if op.local_hash is not None else 0
            self._publish(Stored(op.parent_hash, (StoredBlock(op.seq_hash, local),)))
        return True

    # -- queries -------------------------------------------------------------------------------

    def probe_new_blocks(self, blocks) -> int:
        checks.sequence("blocks", blocks, _unique_block)
        return sum(1 for b in blocks if b not in self._active and b not in self._inactive)

    def prefill_cost(self, sequence) -> PrefillCost:
        snap = as_snapshot(sequence)
        overlap = 0
        for block in snap.unique_blocks:
            if block not in self._active and block not in self._inactive:
                break
            overlap += 1
        cached = min(overlap * self._block_size, snap.num_input_tokens)
        return PrefillCost(len(snap.unique_blocks) - overlap, snap.num_input_tokens - cached, cached, 0)

    def drain_events(self) -> list[KvCacheEvent]:
        out, self._events = self._events, []
        return out

    def current_capacity(self) -> int:
        return len(self._active) + len(self._inactive)

    def num_active_blocks(self) -> int:
        return len(self._active)

    def num_active_block_refs(self) -> int:
        return self._refs

    def num_inactive_blocks(self) -> int:
        return len(self._inactive)

    def active_blocks(self) -> dict:
        return dict(self._active)

    def inactive_blocks(self) -> list:
        return list(self._inactive)

    def eviction_order(self) -> list:
        return list(self._inactive)

    def _check(self) -> None:
        assert all(c >= 1 for c in self._active.values()), "active refcounts must be >= 1"
        assert self._refs == sum(self._active.values()), "ref counter out of sync"
        assert not (self._active.keys() & self._inactive.keys()), "block both active and inactive"
        assert len(self._active) + len(self._inactive) <= self._capacity, "over capacity"
