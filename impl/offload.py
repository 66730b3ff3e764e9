"""Optimized G1→G2 offload: the G1 manager with withheld slots, an LRU G2 pool and two FIFO links.

Same contract as ``kvspec.model.offload`` (read it for the rules).  Structures:

* :class:`FreeSlotsOnly` — the G1 pool as the inherited Use sees it: allocations that would need
  an eviction fail (and are noted), so the optimized Use runs unchanged and stops exactly where
  the offload rule stops it; the withholding happens afterwards.  O(1) per allocation.
* :class:`OffloadEngine` — ``g2``: an ``OrderedDict`` Plh -> block, least recently used first
  (register, victim and touch O(1)); ``reading``: Plh -> swap-ins reading it; ``on_the_way``:
  Plh -> offload batches carrying it (the presence filter, O(1)); one deque of batches per link,
  deadlines non-decreasing along each deque, so completing the due batches merges two sorted
  heads: O(completed).  A G2 victim skips blocks being read: O(read blocks) in the worst case.

Invariants (``_check``): ``len(g2) <= num_g2_blocks``; each link's deadlines are non-decreasing
and end at or before its ``link_free``; ``on_the_way`` counts exactly the blocks of the pending
offload batches; ``reading`` exactly those of pending onboard batches (all in G2); withheld and
reserved slots are allocated G1 slots, disjoint from the manager's own; plus the G1 manager's
``_check``.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from typing import Any

from kvspec import checks
from kvspec.events import KvCacheEvent, Removed, StorageTier, Stored, StoredBlock
from kvspec.hashing import Plh
from kvspec.impl.manager import KvManager
from kvspec.offload import G2OffloadBlock, OffloadConfig, SwapInHandle, SwapInOutcome, TierEvent
from kvspec.protocol import FullBlock, Use

__all__ = ["FreeSlotsOnly", "OffloadEngine", "OffloadKvManager"]

HOST = StorageTier.HOST_PINNED
DEVICE = StorageTier.DEVICE


class FreeSlotsOnly:
    """A view of a block pool whose allocations never evict (``blocked`` notes a refusal)."""

    __slots__ = ("pool", "blocked")

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.blocked = False

    def allocate_with_evictions(self, n: int):
        if self.pool.available_blocks() - self.pool.inactive_len() >= n:
            return self.pool.allocate_with_evictions(n)
        self.blocked = True
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)


class _Batch:
    __slots__ = ("kind", "order", "deadline", "blocks", "slots", "handle", "parent")

    def __init__(self, kind, order, deadline, blocks, slots, handle=None, parent=None) -> None:
        self.kind, self.order, self.deadline = kind, order, deadline
        self.blocks, self.slots, self.handle, self.parent = blocks, slots, handle, parent


class OffloadEngine:
    """G2 pool and the two links (see module docs for structure and cost)."""

    def __init__(self, config: OffloadConfig) -> None:
        self.config = config
        self.g2: OrderedDict[Plh, G2OffloadBlock] = OrderedDict()
        self.reading: Counter = Counter()
        self.on_the_way: Counter = Counter()
        self.links: dict[str, deque[_Batch]] = {"offload": deque(), "onboard": deque()}
        self.link_free = {"offload": 0, "onboard": 0}
        self.orders = 0
        self.handles = 0

    def _schedule(self, kind: str, now: int, count: int) -> tuple[int, int]:
        per = self.config.offload_ticks_per_block if kind == "offload" else self.config.onboard_ticks_per_block
        deadline = max(now, self.link_free[kind]) + count * per
        self.link_free[kind] = deadline
        self.orders += 1
        return deadline, self.orders

    def enqueue_offload(self, blocks: list[G2OffloadBlock], slots: list[int], now: int) -> None:
        """O(blocks)."""
        copied, seen = [], set()
        for b in blocks:
            if b.plh not in self.g2 and not self.on_the_way[b.plh] and b.plh not in seen:
                seen.add(b.plh)
                copied.append(b)
        for b in copied:
            self.on_the_way[b.plh] += 1
        deadline, order = self._schedule("offload", now, len(copied))
        self.links["offload"].append(_Batch("offload", order, deadline, copied, slots))

    def onboard_prefix(self, plhs: list[Plh]) -> list[G2OffloadBlock]:
        out = []
        for plh in plhs:
            block = self.g2.get(plh)
            if block is None:
                break
            out.append(block)
        return out

    def start_onboard(self, blocks, slots, parent, now) -> SwapInHandle:
        deadline, order = self._schedule("onboard", now, len(blocks))
        self.handles += 1
        handle = SwapInHandle(self.handles, tuple(b.seq_hash for b in blocks), deadline)
        for b in blocks:
            self.reading[b.plh] += 1
        self.links["onboard"].append(_Batch("onboard", order, deadline, blocks, slots, handle, parent))
        return handle

    def pop_due(self, now: int) -> _Batch | None:
        """The next batch due by ``now`` in (deadline, creation) order, or ``None``: O(1)."""
        best = None
        for link in self.links.values():
            if link and link[0].deadline <= now and (best is None or (link[0].deadline, link[0].order) <
                                                     (best[0].deadline, best[0].order)):
                best = link
        return best.popleft() if best is not None else None

    def register(self, block: G2OffloadBlock) -> list[tuple[str, G2OffloadBlock]]:
        self.on_the_way[block.plh] -= 1
        if not self.on_the_way[block.plh]:
            del self.on_the_way[block.plh]
        if block.plh in self.g2:
            return []
        out = []
        if len(self.g2) >= self.config.num_g2_blocks:
            victim = next((p for p in self.g2 if p not in self.reading), None)
            if victim is None:
                return []
            out.append(("removed", self.g2.pop(victim)))
        self.g2[block.plh] = block
        out.append(("stored", block))
        return out

    def done_reading(self, blocks: list[G2OffloadBlock]) -> None:
        for b in blocks:
            self.reading[b.plh] -= 1
            if not self.reading[b.plh]:
                del self.reading[b.plh]
            if b.plh in self.g2:
                self.g2.move_to_end(b.plh)

    def batches(self) -> list[_Batch]:
        return sorted((b for link in self.links.values() for b in link), key=lambda b: (b.deadline, b.order))

    def _check(self) -> None:
        assert len(self.g2) <= self.config.num_g2_blocks, "G2 over capacity"
        for kind, link in self.links.items():
            deadlines = [b.deadline for b in link]
            assert deadlines == sorted(deadlines), f"{kind} link out of order"
            assert not deadlines or deadlines[-1] <= self.link_free[kind]
        assert self.on_the_way == Counter(b.plh for b in self.links["offload"] for b in b.blocks)
        assert self.reading == Counter(b.plh for b in self.links["onboard"] for b in b.blocks)
        assert all(p in self.g2 for p in self.reading), "a block being read left G2"


class OffloadKvManager(KvManager):
    """The optimized G1 manager with a G2 offload engine (contract: ``kvspec.model.offload``)."""

    def __init__(self, capacity: int, block_size: int = 16, *, num_g2_blocks: int, offload_ticks_per_block: int = 1,
                 onboard_ticks_per_block: int = 1, eviction: str = "lineage", dp_rank: int = 0, frequency=None):
        config = OffloadConfig(num_g2_blocks, offload_ticks_per_block, onboard_ticks_per_block)
        super().__init__(capacity, block_size, eviction=eviction, dp_rank=dp_rank, frequency=frequency)
        self._engine = OffloadEngine(config)
        self._clock = 0
        self._metadata: dict[int, tuple[int | None, int]] = {}

    def _publish(self, data, tier: StorageTier = DEVICE) -> None:
        self._events.append(TierEvent(KvCacheEvent(self._next_event_id, data, self._dp_rank), tier))
        self._next_event_id += 1
        if tier is DEVICE and type(data) is Stored:
            parent = data.parent_hash
            for block in data.blocks:
                self._metadata[block.block_hash] = (parent, block.tokens_hash)
                parent = block.block_hash

    # -- withholding -----------------------------------------------------------------------------

    def _free_slots(self) -> int:
        return self._pool.available_blocks() - self._pool.inactive_len()

    def _evict_for_offload(self, evicted: list) -> int | None:
        got = self._pool.allocate_with_evictions(1)
        if got is None:
            return None
        (slot,), victims = got
        if not victims:
            self._pool.release_mutable(slot)
            return None
        for victim in victims:  # the victim's own slot (a one-slot allocation)
            evicted.append((victim, self._slot_hash[slot]))
        return slot

    def _withhold(self, evicted: list, slots: list[int], limit: int) -> None:
        while len(slots) < limit:
            slot = self._evict_for_offload(evicted)
            if slot is None:
                return
            slots.append(slot)

    def _offload(self, evicted: list, slots: list[int]) -> None:
        self._publish(Removed(tuple(seq for _, seq in evicted)))
        meta = self._metadata
        blocks = [G2OffloadBlock(plh, seq, *meta.get(seq, (None, 0))) for plh, seq in evicted]
        self._engine.enqueue_offload(blocks, slots, self._clock)

    def _pending_allocations(self, op: Use, start: int) -> int:
        full_index = sum(1 for b in op.blocks[:start] if type(b) is FullBlock)
        needed = 0
        for block in op.blocks[start:]:
            if type(block) is FullBlock:
                plh = op.plhs[full_index]
                full_index += 1
                if not self._holds(block.hash) and self._pool._primary_of(plh) is None:
                    needed += 1
            elif block.uuid not in self._partials:
                needed += 1
        return needed

    def _use(self, op: Use) -> int:
        real = self._pool
        view = self._pool = FreeSlotsOnly(real)
        try:
            processed = super()._use(op)
        finally:
            self._pool = real
        if view.blocked:
            evicted: list = []
            first = self._evict_for_offload(evicted)
            if first is not None:
                slots = [first]
                self._withhold(evicted, slots, 1 + self._pending_allocations(op, processed + 1))
                self._offload(evicted, slots)
        return processed

    # -- clock -----------------------------------------------------------------------------------

    def tick(self, now: int) -> None:
        checks.clock_to(self._clock, now)
        self._clock = now
        engine, pool = self._engine, self._pool
        while (batch := engine.pop_due(now)) is not None:
            if batch.kind == "offload":
                for block in batch.blocks:
                    for what, b in engine.register(block):
                        if what == "removed":
                            self._publish(Removed((b.seq_hash,)), HOST)
                        else:
                            self._publish(Stored(b.parent_hash, (StoredBlock(b.seq_hash, b.local_hash),)), HOST)
                for slot in batch.slots:
                    pool.release_mutable(slot)
            else:
                engine.done_reading(batch.blocks)
                self._register_swapped_in(batch)

    def earliest_offload_deadline(self) -> int | None:
        heads = [link[0].deadline for link in self._engine.links.values() if link]
        return min(heads) if heads else None

    # -- swap-in ---------------------------------------------------------------------------------

    def swap_in(self, plhs, parent_hash=None):
        checks.swap_in(plhs, parent_hash, Plh)
        blocks = self._engine.onboard_prefix(list(plhs))
        if not blocks:
            return SwapInOutcome.NO_HITS
        pool = self._pool
        free = self._free_slots()
        if free >= len(blocks):
            slots = pool.allocate(len(blocks))
            return self._engine.start_onboard(blocks, slots, parent_hash, self._clock)
        reserved = pool.allocate(free) if free else []
        evicted: list = []
        first = self._evict_for_offload(evicted)
        for slot in reserved:
            pool.release_mutable(slot)
        if first is None:
            return SwapInOutcome.NO_HITS
        withheld = [first]
        self._withhold(evicted, withheld, len(blocks) - len(reserved))
        self._offload(evicted, withheld)
        return SwapInOutcome.BLOCKED_ON_G1_OFFLOAD

    def _register_swapped_in(self, batch: _Batch) -> None:
        pool, slot_hash = self._pool, self._slot_hash
        parent, run = batch.parent, []
        for block, slot in zip(batch.blocks, batch.slots):
            plh = block.plh
            if self._holds(block.seq_hash) or pool._owner_of_key(plh.key) is not None:
                pool.release_mutable(slot)
                if run:
                    self._publish(Stored(parent, tuple(run)))
                    run = []
                parent = block.seq_hash
                continue
            pool.release(pool.register(slot, plh))
            slot_hash[slot] = block.seq_hash
            run.append(StoredBlock(block.seq_hash, block.local_hash))
        if run:
            self._publish(Stored(parent, tuple(run)))

    # -- observers ---------------------------------------------------------------------------------

    def now(self) -> int:
        return self._clock

    def g2_blocks(self) -> list[int]:
        return [b.seq_hash for b in self._engine.g2.values()]

    def pending_transfers(self) -> list[tuple]:
        return [(b.kind, b.deadline, tuple(x.seq_hash for x in b.blocks), len(b.slots))
                for b in self._engine.batches()]

    def _slots_held_elsewhere(self) -> int:
        return sum(len(b.slots) for b in self._engine.batches())

    def _check(self) -> None:
        super()._check()
        self._engine._check()
        held = [s for b in self._engine.batches() for s in b.slots]
        assert len(held) == len(set(held)), "a G1 slot held by two batches"
        own = set(self._partials.values()) | self._held_full_slots()
        assert not (set(held) & own), "a withheld slot is also in use"
