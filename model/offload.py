"""Reference model of the mocker's G1→G2 offload (``kvbm-offload``): a G2 pool behind the G1 manager.

An :class:`OffloadKvManager` is the G1 :class:`~kvspec.model.manager.KvManager` with a
:class:`MockOffloadEngine` attached: a G2 (pinned host) pool of ``num_g2_blocks`` blocks and two
copy links, G1→G2 (*offload*) and G2→G1 (*onboard*), on an explicit integer clock.  The rules,
on top of the G1 manager's:

* **Eviction becomes offload.**  A slot whose acquisition needs an eviction is never used
  directly: the evicted block is announced as a device ``Removed`` at once and copied to G2, and
  the slot stays *withheld* (counted active, holding nothing) until the copy completes.  The
  operation stops there, as when G1 is full: a Use returns the blocks it processed.  The same
  batch withholds more eviction-needing slots, up to the allocations the rest of the Use still
  needs (so one copy frees room for the whole request).  Why: the GPU memory cannot be reused
  while its content is being read.
* **The copy clock.**  Each link copies its batches one after the other, ``*_ticks_per_block``
  ticks per block: a batch of ``n`` blocks queued at ``now`` completes at ``max(now, link free)
  + n * ticks``.  ``tick(now)`` moves the clock and completes every batch whose deadline has come,
  in deadline order (creation order among equals).  Blocks already in G2 or on their way there
  are not copied again.
* **G2 announces on arrival.**  A completed offload registers each block in G2, in batch order:
  when G2 is full, its least recently used block that no swap-in is reading is evicted
  (``host_pinned`` ``Removed``), then the block is announced (``host_pinned`` ``Stored`` under the
  block before it, with its local hash); if every G2 block is being read, the copy is dropped.
  Then the batch's withheld G1 slots go back to the free list.  Never before: the router must not
  think a block is on the host while it is still in flight.
* **Swap-in.**  ``swap_in(plhs, parent_hash)`` takes the longest leading run of ``plhs`` present in
  G2 (none: ``NO_HITS``) and reserves that many G1 slots: if one needs an eviction, the reserved
  slots go back, the eviction is offloaded as above (withholding up to the slots still missing)
  and the answer is ``BLOCKED_ON_G1_OFFLOAD``; if G1 has no room at all, ``NO_HITS``; otherwise the
  copy is scheduled on the onboard link and a :class:`~kvspec.offload.SwapInHandle` returned.  The
  G2 blocks are pinned while being read.  On completion each block is registered in G1 as an
  *inactive* (cached) block, in order: a block G1 already holds (or an identity with its lineage
  key) is skipped and its slot freed; the new ones are announced as device ``Stored`` runs, the
  first under ``parent_hash`` and each later run under the skipped block before it.  The caller
  keeps ``parent_hash``'s block pinned meanwhile, as the scheduler does.
* The G2 copy stays after a swap-in (a later G1 eviction of that block copies nothing).

Every event, device or host, draws its id from one counter; ``drain_events`` returns
:class:`~kvspec.offload.TierEvent`\\ s.  Bad input (a clock going back, non-Plh identities)
raises :class:`~kvspec.errors.InvalidArgument` and changes nothing.
"""

from __future__ import annotations

from kvspec import checks
from kvspec.events import KvCacheEvent, Removed, StorageTier, Stored, StoredBlock
from kvspec.hashing import Plh
from kvspec.model.manager import KvManager
from kvspec.offload import G2OffloadBlock, OffloadConfig, SwapInHandle, SwapInOutcome, TierEvent
from kvspec.protocol import FullBlock, Use

__all__ = ["MockOffloadEngine", "OffloadKvManager", "Transfer"]

HOST = StorageTier.HOST_PINNED


class Transfer:
    """One batch on a link: its blocks, the G1 slots it holds, when it completes."""

    def __init__(self, kind: str, order: int, deadline: int, blocks: list[G2OffloadBlock], slots: list[int],
                 handle: SwapInHandle | None = None, parent: int | None = None) -> None:
        self.kind, self.order, self.deadline = kind, order, deadline
        self.blocks, self.slots, self.handle, self.parent = blocks, slots, handle, parent

    def describe(self) -> tuple:
        return (self.kind, self.deadline, tuple(b.seq_hash for b in self.blocks), len(self.slots))


class MockOffloadEngine:
    """The G2 pool (least recently used first) and the two copy links (see module docs)."""

    def __init__(self, config: OffloadConfig) -> None:
        self.config = config
        self.g2: list[G2OffloadBlock] = []  # next victim first
        self.reading: dict[Plh, int] = {}  # G2 blocks pinned by swap-ins in flight -> count
        self.transfers: list[Transfer] = []
        self.link_free = {"offload": 0, "onboard": 0}
        self.orders = 0
        self.handles = 0

    def _schedule(self, kind: str, now: int, count: int) -> tuple[int, int]:
        per_block = self.config.offload_ticks_per_block if kind == "offload" else self.config.onboard_ticks_per_block
        deadline = max(now, self.link_free[kind]) + count * per_block
        self.link_free[kind] = deadline
        self.orders += 1
        return deadline, self.orders

    def in_g2(self, plh: Plh) -> bool:
        return any(b.plh == plh for b in self.g2)

    def on_the_way(self, plh: Plh) -> bool:
        return any(b.plh == plh for t in self.transfers if t.kind == "offload" for b in t.blocks)

    def enqueue_offload(self, blocks: list[G2OffloadBlock], slots: list[int], now: int) -> None:
        copied: list[G2OffloadBlock] = []
        for b in blocks:
            if not self.in_g2(b.plh) and not self.on_the_way(b.plh) and all(c.plh != b.plh for c in copied):
                copied.append(b)
        deadline, order = self._schedule("offload", now, len(copied))
        self.transfers.append(Transfer("offload", order, deadline, copied, slots))

    def onboard_prefix(self, plhs: list[Plh]) -> list[G2OffloadBlock]:
        """The blocks of the longest leading run of ``plhs`` held in G2."""
        out = []
        for plh in plhs:
            found = [b for b in self.g2 if b.plh == plh]
            if not found:
                break
            out.append(found[0])
        return out

    def start_onboard(self, blocks: list[G2OffloadBlock], slots: list[int], parent: int | None,
                      now: int) -> SwapInHandle:
        deadline, order = self._schedule("onboard", now, len(blocks))
        self.handles += 1
        handle = SwapInHandle(self.handles, tuple(b.seq_hash for b in blocks), deadline)
        for b in blocks:
            self.reading[b.plh] = self.reading.get(b.plh, 0) + 1
        self.transfers.append(Transfer("onboard", order, deadline, blocks, slots, handle, parent))
        return handle

    def due(self, now: int) -> list[Transfer]:
        """Remove and return the batches complete by ``now``, in (deadline, creation) order."""
        done = sorted((t for t in self.transfers if t.deadline <= now), key=lambda t: (t.deadline, t.order))
        self.transfers = [t for t in self.transfers if t.deadline > now]
        return done

    def register(self, block: G2OffloadBlock) -> list[tuple[str, G2OffloadBlock]]:
        """Put an arrived block in G2: ``[("removed", victim)?, ("stored", block)]`` or ``[]``."""
        if self.in_g2(block.plh):
            return []
        out = []
        if len(self.g2) >= self.config.num_g2_blocks:
            victims = [b for b in self.g2 if b.plh not in self.reading]
            if not victims:
                return []
            self.g2.remove(victims[0])
            out.append(("removed", victims[0]))
        self.g2.append(block)
        out.append(("stored", block))
        return out

    def done_reading(self, blocks: list[G2OffloadBlock]) -> None:
        """A swap-in finished: unpin its blocks and mark them most recently used."""
        for b in blocks:
            self.reading[b.plh] -= 1
            if not self.reading[b.plh]:
                del self.reading[b.plh]
            for held in [h for h in self.g2 if h.plh == b.plh]:
                self.g2.remove(held)
                self.g2.append(held)


class OffloadKvManager(KvManager):
    """The G1 manager with a G2 offload engine attached (see module docs)."""

    def __init__(self, capacity: int, block_size: int = 16, *, num_g2_blocks: int, offload_ticks_per_block: int = 1,
                 onboard_ticks_per_block: int = 1, eviction: str = "lineage", dp_rank: int = 0, frequency=None):
        config = OffloadConfig(num_g2_blocks, offload_ticks_per_block, onboard_ticks_per_block)
        super().__init__(capacity, block_size, eviction=eviction, dp_rank=dp_rank, frequency=frequency)
        self.engine = MockOffloadEngine(config)
        self.clock = 0
        #: sequence hash -> (parent hash, local hash), from the device Stored events
        self.metadata: dict[int, tuple[int | None, int]] = {}
        self._blocked = False

    # -- events ----------------------------------------------------------------------------------

    def _publish(self, data, tier: StorageTier = StorageTier.DEVICE) -> None:
        self.events.append(TierEvent(KvCacheEvent(self.next_event_id, data, self.dp_rank), tier))
        self.next_event_id += 1
        if tier is StorageTier.DEVICE and isinstance(data, Stored):
            parent = data.parent_hash
            for block in data.blocks:
                self.metadata[block.block_hash] = (parent, block.tokens_hash)
                parent = block.block_hash

    # -- G1 slots: an eviction is never used directly --------------------------------------------

    def _has_free_slot(self) -> bool:
        return self.pool.available_blocks() - self.pool.inactive_len() > 0

    def _take_slot(self, evicted):
        if self._has_free_slot():
            return super()._take_slot(evicted)
        self._blocked = True
        return None

    def _evict_for_offload(self, evicted: list) -> int | None:
        """One eviction-needing slot, withheld for the offload; ``None`` if none can be had."""
        got = self.pool.allocate_with_evictions(1)
        if got is None:
            return None
        (slot,), victims = got
        if not victims:
            self.pool.release_mutable(slot)
            return None
        for plh in victims:
            evicted.append((plh, self.registry.pop(plh)))
            del self.lineage[plh.key]  # an evicted identity no longer holds its lineage key
        return slot

    def _withhold(self, evicted: list, slots: list[int], limit: int) -> None:
        while len(slots) < limit:
            slot = self._evict_for_offload(evicted)
            if slot is None:
                return
            slots.append(slot)

    def _offload(self, evicted: list, slots: list[int]) -> None:
        """Device Removed now; copy to G2, withholding ``slots`` until the copy completes."""
        self._publish(Removed([seq for _, seq in evicted]))
        blocks = [G2OffloadBlock(plh, seq, *self.metadata.get(seq, (None, 0))) for plh, seq in evicted]
        self.engine.enqueue_offload(blocks, slots, self.clock)

    def _pending_allocations(self, op: Use, start: int) -> int:
        """Slots blocks ``start..`` of ``op`` would still need (upstream's ``pending_use_allocations``)."""
        full_index = sum(1 for b in op.blocks[:start] if isinstance(b, FullBlock))
        needed = 0
        for block in op.blocks[start:]:
            if isinstance(block, FullBlock):
                plh = op.plhs[full_index]
                full_index += 1
                if block.hash not in self.fulls and plh not in self.registry:
                    needed += 1
            elif block.uuid not in self.partials:
                needed += 1
        return needed

    def _use(self, op: Use) -> int:
        self._blocked = False
        processed = super()._use(op)
        if self._blocked:
            evicted: list = []
            first = self._evict_for_offload(evicted)
            if first is not None:
                slots = [first]
                self._withhold(evicted, slots, 1 + self._pending_allocations(op, processed + 1))
                self._offload(evicted, slots)
        return processed

    # -- the clock -------------------------------------------------------------------------------

    def tick(self, now: int) -> None:
        """Move the clock to ``now``; complete every copy due by then (module docs)."""
        checks.clock_to(self.clock, now)
        self.clock = now
        for transfer in self.engine.due(now):
            if transfer.kind == "offload":
                for block in transfer.blocks:
                    for what, b in self.engine.register(block):
                        if what == "removed":
                            self._publish(Removed([b.seq_hash]), HOST)
                        else:
                            self._publish(Stored(b.parent_hash, [StoredBlock(b.seq_hash, b.local_hash)]), HOST)
                for slot in transfer.slots:
                    self.pool.release_mutable(slot)
            else:
                self.engine.done_reading(transfer.blocks)
                self._register_swapped_in(transfer)

    def earliest_offload_deadline(self) -> int | None:
        return min((t.deadline for t in self.engine.transfers), default=None)

    # -- swap-in ---------------------------------------------------------------------------------

    def swap_in(self, plhs: list[Plh], parent_hash: int | None = None) -> SwapInHandle | SwapInOutcome:
        """Schedule the G2→G1 copy of the leading G2 run of ``plhs`` (module docs)."""
        checks.swap_in(plhs, parent_hash, Plh)
        blocks = self.engine.onboard_prefix(list(plhs))
        if not blocks:
            return SwapInOutcome.NO_HITS
        slots: list[int] = []
        while len(slots) < len(blocks):
            if self._has_free_slot():
                slots.append(self.pool.allocate(1)[0])
                continue
            evicted: list = []
            first = self._evict_for_offload(evicted)
            for slot in slots:
                self.pool.release_mutable(slot)
            if first is None:
                return SwapInOutcome.NO_HITS
            withheld = [first]
            self._withhold(evicted, withheld, len(blocks) - len(slots))
            self._offload(evicted, withheld)
            return SwapInOutcome.BLOCKED_ON_G1_OFFLOAD
        return self.engine.start_onboard(blocks, slots, parent_hash, self.clock)

    def _present_in_g1(self, block: G2OffloadBlock) -> bool:
        return block.seq_hash in self.fulls or block.plh.key in self.lineage

    def _register_swapped_in(self, transfer: Transfer) -> None:
        parent, run = transfer.parent, []
        for block, slot in zip(transfer.blocks, transfer.slots):
            if self._present_in_g1(block):
                self.pool.release_mutable(slot)
                if run:
                    self._publish(Stored(parent, run))
                    run = []
                parent = block.seq_hash
                continue
            self.pool.release(self.pool.register(slot, block.plh))
            self._register(block.plh, block.seq_hash)
            run.append(StoredBlock(block.seq_hash, block.local_hash))
        if run:
            self._publish(Stored(parent, run))

    # -- observers ---------------------------------------------------------------------------------

    def now(self) -> int:
        return self.clock

    def g2_blocks(self) -> list[int]:
        """Sequence hashes held in G2, next victim first."""
        return [b.seq_hash for b in self.engine.g2]

    def pending_transfers(self) -> list[tuple]:
        """``(kind, deadline, sequence hashes, withheld or reserved G1 slots)`` per batch in flight."""
        return [t.describe() for t in sorted(self.engine.transfers, key=lambda t: (t.deadline, t.order))]
