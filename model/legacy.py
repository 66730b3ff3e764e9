"""Reference model of the legacy mocker KV manager (HashCache + LRU, dynamo-mocker 1.0.2).

The older generation of the mocker's manager (``docs/upstream.md`` M6.1), kept as a second
protocol, not a mode of :class:`kvspec.model.KvManager` (``docs/decisions.md`` D1).
There are no physical slots: a block *is* its :class:`~kvspec.protocol.UniqueBlock` key.

State
  * ``active``: block -> reference count (partial blocks included, keyed by uuid);
  * ``inactive``: block -> logical time it was released; the smallest time is evicted first (LRU;
    upstream stamps wall-clock time, kvspec a counter so runs are reproducible);
  * ``capacity``: at most this many blocks, active and inactive together.

Rules (one per operation, as upstream ``kv_manager.rs`` @ 1.0.2):
  * **Use** — per block in order: active -> +1 ref; inactive -> reactivate with 1 ref; otherwise,
    if full, evict the least recently released inactive block (publishing ``Removed`` at once if it
    is a full block) or fail; then pin it with 1 ref.  The ``Stored`` event lists the new full blocks
    under the last reused full block, published after the loop.  Returns ``False`` on capacity
    failure: blocks pinned so far stay pinned and their ``Stored`` is *not* published (upstream).
  * **Destroy** — drop each block from the active pool whatever its count; ``Removed`` for the full ones.
  * **Deref** — drop one ref per listed block; at zero the block becomes inactive.  Blocks not
    active are ignored (upstream).
  * **Promote** — the partial (held exactly once) becomes the full block: +1 ref if that block is
    active, reactivated if inactive, else pinned new and published as ``Stored`` under ``parent_hash``.

Upstream quirks kept on purpose (documented in the golden tests):
  * ``Stored`` takes its tokens hashes as the *suffix* of ``local_hashes`` (right when the new
    blocks are a suffix of the Use, shifted otherwise);
  * one ``Stored`` per Use anchored to the last reused block, even when a reused block follows a
    new one;
  * on capacity failure the already pinned new blocks are never announced.

kvspec differences (upstream panics): bad lengths, a ``parent`` (the legacy protocol has none), a
``Destroy`` of a block not active, a ``Promote`` of an unknown or shared partial raise typed errors
and change nothing.  A reused *partial* block does not become the Stored anchor (upstream panics
"parent block cannot be partial" after mutating).
"""

from __future__ import annotations

from kvspec import checks
from kvspec.errors import BlockNotHeld, BlockStateError, UnknownPartialBlock
from kvspec.events import KvCacheEvent, Removed, Stored, StoredBlock
from kvspec.protocol import Deref, Destroy, FullBlock, PartialBlock, Promote, Use
from kvspec.sequence import ActiveSequence, PrefillCost, SequenceSnapshot, as_snapshot

__all__ = ["LegacyKvManager"]

#: what ``LegacyKvManager.process`` accepts (exactly these classes: a subclass is refused)
OPERATIONS = (Use, Destroy, Deref, Promote)
_unique_block = checks.exact((FullBlock, PartialBlock))


class LegacyKvManager:
    """The legacy (L0/L1) mocker manager.  ``process(op) -> bool``."""

    def __init__(self, capacity: int, block_size: int = 16, *, dp_rank: int = 0):
        checks.manager_options(capacity, block_size, dp_rank)
        self.capacity = capacity
        self.block_size = block_size
        self.dp_rank = dp_rank
        self.active: dict = {}
        self.inactive: dict = {}
        self.clock = 0
        self.next_event_id = 0
        self.events: list[KvCacheEvent] = []

    # -- events --------------------------------------------------------------------------------

    def _publish(self, data) -> None:
        self.events.append(KvCacheEvent(self.next_event_id, data, self.dp_rank))
        self.next_event_id += 1

    # -- pools ---------------------------------------------------------------------------------

    def _release_to_inactive(self, block) -> None:
        self.clock += 1
        self.inactive[block] = self.clock

    def _evict_oldest(self):
        """The least recently released block.  ``inactive`` is a dict filled in release order (the
        clock only grows), so its first key has the smallest time."""
        victim = next(iter(self.inactive))
        del self.inactive[victim]
        return victim

    # -- protocol ------------------------------------------------------------------------------

    def process(self, op) -> bool:
        kind = checks.operation("LegacyKvManager", op, OPERATIONS)
        if kind is Use:
            return self._use(op)
        if kind is Destroy:
            return self._destroy(op)
        if kind is Deref:
            return self._deref(op)
        return self._promote(op)

    def _use(self, op: Use) -> bool:
        checks.use_lengths("LegacyKvManager", op, plhs_required=False)
        checks.use_parent("LegacyKvManager", op, allowed=False)
        anchor = None
        stored: list[int] = []
        for block in op.blocks:
            if block in self.active:
                self.active[block] += 1
            elif block in self.inactive:
                del self.inactive[block]
                self.active[block] = 1
            else:
                if len(self.active) + len(self.inactive) >= self.capacity:
                    if not self.inactive:
                        return False
                    victim = self._evict_oldest()
                    if isinstance(victim, FullBlock):
                        self._publish(Removed([victim.hash]))
                self.active[block] = 1
                if isinstance(block, FullBlock):
                    stored.append(block.hash)
                continue
            if isinstance(block, FullBlock):
                anchor = block.hash
        if stored:
            # upstream pairs the stored blocks with the LAST len(stored) local hashes
            tail = list(op.local_hashes[len(op.local_hashes) - len(stored):]) if op.local_hashes else [0] * len(stored)
            self._publish(Stored(anchor, [StoredBlock(h, lh) for h, lh in zip(stored, tail)]))
        return True

    def _destroy(self, op: Destroy) -> bool:
        if len(set(op.blocks)) != len(op.blocks) or any(b not in self.active for b in op.blocks):
            raise BlockNotHeld(f"Destroy names a block that is not active: {op.blocks!r}")
        for block in op.blocks:
            del self.active[block]
        removed = [b.hash for b in op.blocks if isinstance(b, FullBlock)]
        if removed:
            self._publish(Removed(removed))
        return True

    def _deref(self, op: Deref) -> bool:
        for block in op.blocks:
            if block not in self.active:
                continue
            if self.active[block] == 1:
                del self.active[block]
                self._release_to_inactive(block)
            else:
                self.active[block] -= 1
        return True

    def _promote(self, op: Promote) -> bool:
        partial = PartialBlock(op.uuid)
        if partial not in self.active:
            raise UnknownPartialBlock(f"Promote: partial block {op.uuid} is not active")
        if self.active[partial] != 1:
            raise BlockStateError(f"Promote: partial block {op.uuid} is held {self.active[partial]} times")
        del self.active[partial]
        full = FullBlock(op.seq_hash)
        if full in self.active:
            self.active[full] += 1
        elif full in self.inactive:
            del self.inactive[full]
            self.active[full] = 1
        else:
            self.active[full] = 1
            local = op.local_hash if op.local_hash is not None else 0
            self._publish(Stored(op.parent_hash, [StoredBlock(op.seq_hash, local)]))
        return True

    # -- queries -------------------------------------------------------------------------------

    def probe_new_blocks(self, blocks) -> int:
        """How many of ``blocks`` are neither active nor inactive."""
        checks.sequence("blocks", blocks, _unique_block)
        return sum(1 for b in blocks if b not in self.active and b not in self.inactive)

    def prefill_cost(self, sequence: ActiveSequence | SequenceSnapshot) -> PrefillCost:
        """Longest prefix of the sequence's blocks present (active or inactive), partials included.

        The legacy manager has no active/inactive split: ``active_cached_tokens`` is always 0.
        """
        snap = as_snapshot(sequence)
        overlap = 0
        for block in snap.unique_blocks:
            if block not in self.active and block not in self.inactive:
                break
            overlap += 1
        cached = min(overlap * self.block_size, snap.num_input_tokens)
        return PrefillCost(len(snap.unique_blocks) - overlap, snap.num_input_tokens - cached, cached, 0)

    # -- observers -----------------------------------------------------------------------------

    def drain_events(self) -> list[KvCacheEvent]:
        out, self.events = self.events, []
        return out

    def current_capacity(self) -> int:
        return len(self.active) + len(self.inactive)

    def num_active_blocks(self) -> int:
        return len(self.active)

    def num_active_block_refs(self) -> int:
        return sum(self.active.values())

    def num_inactive_blocks(self) -> int:
        return len(self.inactive)

    def active_blocks(self) -> dict:
        """Active block -> reference count."""
        return dict(self.active)

    def inactive_blocks(self) -> list:
        """Inactive blocks, next victim first."""
        return sorted(self.inactive, key=self.inactive.__getitem__)

    def eviction_order(self) -> list:
        return self.inactive_blocks()
