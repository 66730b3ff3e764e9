"""Reference model of the mocker's G1 KV manager (``kvbm_backend.rs``; ``docs/upstream.md`` M4, M6).

The manager translates the mocker's block protocol (:mod:`kvspec.protocol`) into a
:class:`~kvspec.model.pool.BlockPool` of ``capacity`` slots and tells the router what it holds
through KV events.

State
  * ``partials``: partial block uuid -> the pool slot it fills (a mutable, unregistered slot);
  * ``fulls``: sequence hash -> ``[pool block id, references]`` — the requests' references on a
    full block (upstream keeps one ``ImmutableBlock`` clone per reference; kvspec keeps one pool
    reference per entry and counts the rest here, which is observably the same);
  * ``registry``: Plh -> sequence hash of every block registered in the pool and not evicted
    (upstream's ``registered_blocks``): exactly the blocks the router has been told about;
  * ``events``: published, not yet drained; ``next_event_id`` counts from 0.

Rules
  * **Use(blocks, local_hashes, plhs, token_ids, parent)** — per block, in order:
      - full block already in ``fulls`` -> one more reference (*active hit*);
      - else its Plh matches a live pool block -> pin it (*inactive hit*, no event);
      - else take one slot (free first, else evict one inactive block), register it under its
        Plh (*new store*);
      - partial block already held -> nothing; else take one slot for it;
      - no slot at all -> stop: the Use returns how many blocks it processed (``n``); blocks
        ``0..n-1`` stay pinned and are announced (upstream's partial failure).
    Then the events: one ``Stored`` per contiguous run of newly stored full blocks, anchored to the
    full block just before the run in the Use (or ``parent`` for a leading run); then one
    ``Removed`` naming the evicted blocks in eviction order.
  * **Deref(blocks)** — drop one reference per listed block; a partial's slot goes back to the free
    list; a full block with no reference left goes to the pool's inactive (evictable) set.  No event.
  * **Promote(uuid, seq_hash, parent_hash, local_hash, plh)** — the partial's slot becomes the full
    block: +1 reference if the block is already held, else reuse a live block with that Plh (the
    slot is freed), else register the slot and publish ``Stored(parent_hash, [block])``.
  * ``process`` returns the Use's processed count, and 1 for a Deref or a Promote (as upstream).

kvspec decisions (``docs/decisions.md``)
  * **Parent anchoring** (``docs/decisions.md`` D6): upstream merges all new blocks of a Use into one Stored
    anchored to the last *reused* block; when a reused block follows a new one
    (``[A hit, B new, C hit, D new]``) that files B under C.  kvspec anchors each run of new
    blocks to its real predecessor.  Both agree when the new blocks are a suffix.
  * **Net events of one Use**: a block the Use evicts and then stores again itself (it was
    inactive, lost its slot to an earlier block of the same Use, and was re-registered) is
    neither in ``Stored`` nor in ``Removed``: the router keeps holding it.  Upstream publishes it
    in both, Stored first, so the router drops a block the worker holds, and its shadow registry
    loses the block (its later eviction is never announced).
  * **Errors** (``docs/decisions.md`` D4): mismatched lengths (:class:`LengthMismatch`), a partial ``parent``
    (:class:`InvalidParent`), a Plh that shares its lineage key ``(position, current)`` with a
    different live identity or another Plh of the same Use (:class:`DuplicateLineage`; upstream's
    lineage graph would panic on it later), a Deref of a block not held or named more times than
    held (:class:`BlockNotHeld`), a Promote of an unknown partial (:class:`UnknownPartialBlock`).
    Everything is validated first; a rejected operation changes nothing and publishes nothing.
  * Kept from upstream: a Use naming a held full block is an active hit whatever its Plh; a Plh
    hit under another sequence hash pins that block under the new hash.
"""

from __future__ import annotations

from kvspec import checks
from kvspec.errors import BlockNotHeld, DuplicateLineage, UnknownPartialBlock
from kvspec.events import KvCacheEvent, Removed, Stored, StoredBlock
from kvspec.hashing import Plh
from kvspec.model.eviction import BACKENDS
from kvspec.model.pool import BlockPool
from kvspec.protocol import Deref, FullBlock, PartialBlock, Promote, Use
from kvspec.sequence import ActiveSequence, PrefillCost, SequenceSnapshot, as_snapshot

__all__ = ["KvManager", "stored_runs"]

#: what ``KvManager.process`` accepts (exactly these classes: a subclass is refused)
OPERATIONS = (Use, Deref, Promote)


def stored_runs(parent: int | None, blocks: list[tuple[int, int, bool]]) -> list[Stored]:
    """Decision 6: one Stored per run of announced blocks, under the block just before the run.

    ``blocks`` are a Use's processed full blocks as ``(hash, local hash, announced)``; the first
    run's anchor is the Use's ``parent``.  (Upstream instead makes ONE event of every announced
    block, anchored to the last block that was not announced.)
    """
    events: list[Stored] = []
    anchor, run = parent, []
    for seq_hash, local, announced in blocks:
        if announced:
            run.append(StoredBlock(seq_hash, local))
            continue
        if run:
            events.append(Stored(anchor, run))
            run = []
        anchor = seq_hash
    if run:
        events.append(Stored(anchor, run))
    return events


class KvManager:
    """The G1 mocker KV manager.  ``process(op) -> int``; see the module docstring for the rules."""

    def __init__(self, capacity: int, block_size: int = 16, *, eviction: str = "lineage", dp_rank: int = 0,
                 frequency=None):
        frequency = checks.kv_manager_options(capacity, block_size, dp_rank, eviction, frequency, BACKENDS)
        self.capacity = capacity
        self.block_size = block_size
        self.dp_rank = dp_rank
        self.pool = BlockPool(capacity, eviction=eviction, frequency=frequency)
        self.partials: dict[int, int] = {}
        self.fulls: dict[int, list[int]] = {}
        self.registry: dict[Plh, int] = {}
        self.lineage: dict[tuple[int, int], Plh] = {}  # lineage key -> the registered Plh holding it
        self.events: list[KvCacheEvent] = []
        self.next_event_id = 0

    # -- events ----------------------------------------------------------------------------------

    def _publish(self, data) -> None:
        self.events.append(KvCacheEvent(self.next_event_id, data, self.dp_rank))
        self.next_event_id += 1

    # -- validation (before anything changes) ----------------------------------------------------

    def _check_lineage(self, plhs) -> None:
        """At most one live identity per lineage key, counting the operation's own Plhs."""
        own: dict[tuple[int, int], Plh] = {}
        for plh in plhs:
            other = self.lineage.get(plh.key) or own.setdefault(plh.key, plh)
            if other != plh:
                raise DuplicateLineage(f"{plh} shares lineage key {plh.key} with {other}")

    def _validate_use(self, op: Use) -> None:
        checks.use_lengths("KvManager", op)
        checks.use_parent("KvManager", op)
        self._check_lineage(op.plhs)

    def _validate_deref(self, op: Deref) -> None:
        wanted: dict = {}
        for block in op.blocks:
            wanted[block] = wanted.get(block, 0) + 1
        for block, count in wanted.items():
            if isinstance(block, PartialBlock):
                held = 1 if block.uuid in self.partials else 0
            else:
                held = self.fulls[block.hash][1] if block.hash in self.fulls else 0
            if count > held:
                raise BlockNotHeld(f"Deref: {block!r} named {count} times, held {held} times")

    # -- slots -----------------------------------------------------------------------------------

    def _register(self, plh: Plh, seq_hash: int) -> None:
        self.registry[plh] = seq_hash
        self.lineage[plh.key] = plh

    def _take_slot(self, evicted: dict[Plh, int]) -> int | None:
        """One slot: free first, else evict one inactive block (recorded in ``evicted``, in order)."""
        got = self.pool.allocate_with_evictions(1)
        if got is None:
            return None
        (slot,), victims = got
        for plh in victims:
            evicted[plh] = self.registry.pop(plh)
            del self.lineage[plh.key]
        return slot

    # -- protocol ----------------------------------------------------------------------------------

    def process(self, op) -> int:
        kind = checks.operation("KvManager", op, OPERATIONS)
        if kind is Use:
            return self._use(op)
        if kind is Deref:
            return self._deref(op)
        return self._promote(op)

    def _use(self, op: Use) -> int:
        self._validate_use(op)
        evicted: dict[Plh, int] = {}  # Plh -> sequence hash, in eviction order
        done: list[tuple[int, int, bool]] = []  # per processed full block: hash, local hash, announce?
        local_hashes = iter(op.local_hashes or [0] * len(op.plhs))
        plhs = iter(op.plhs)
        processed = 0
        for block in op.blocks:
            if isinstance(block, FullBlock):
                plh, local = next(plhs), next(local_hashes)
                outcome = self._use_full(block.hash, plh, evicted)
                if outcome is None:
                    break
                # a block registered when the Use began can be stored anew only after this very Use
                # evicted it: then the router still holds it, and nothing is announced (net events)
                announce = outcome == "new store" and evicted.get(plh) != block.hash
                done.append((block.hash, local, announce))
            elif block.uuid not in self.partials:
                slot = self._take_slot(evicted)
                if slot is None:
                    break
                self.partials[block.uuid] = slot
            processed += 1
        parent = op.parent.hash if op.parent is not None else None
        for stored in stored_runs(parent, done):
            self._publish(stored)
        removed = [h for plh, h in evicted.items() if self.registry.get(plh) != h]
        if removed:
            self._publish(Removed(removed))
        return processed

    def _use_full(self, seq_hash: int, plh: Plh, evicted: dict[Plh, int]) -> str | None:
        """Pin one full block; returns the outcome, or ``None`` when no slot is left."""
        if seq_hash in self.fulls:
            self.fulls[seq_hash][1] += 1
            return "active hit"
        hit = self.pool.match_blocks([plh])
        if hit:
            self.fulls[seq_hash] = [hit[0], 1]
            return "inactive hit"
        slot = self._take_slot(evicted)
        if slot is None:
            return None
        self.fulls[seq_hash] = [self.pool.register(slot, plh), 1]
        self._register(plh, seq_hash)
        return "new store"

    def _deref(self, op: Deref) -> int:
        self._validate_deref(op)
        for block in op.blocks:
            if isinstance(block, PartialBlock):
                self.pool.release_mutable(self.partials.pop(block.uuid))
                continue
            entry = self.fulls[block.hash]
            entry[1] -= 1
            if entry[1] == 0:
                del self.fulls[block.hash]
                self.pool.release(entry[0])
        return 1  # upstream's process() returns 1 for every Deref

    def _promote(self, op: Promote) -> int:
        if op.uuid not in self.partials:
            raise UnknownPartialBlock(f"Promote: partial block {op.uuid} is not held")
        self._check_lineage([op.plh])
        slot = self.partials.pop(op.uuid)
        if op.seq_hash in self.fulls:
            self.pool.release_mutable(slot)
            self.fulls[op.seq_hash][1] += 1
            return 1
        hit = self.pool.match_blocks([op.plh])
        if hit:
            self.pool.release_mutable(slot)
            self.fulls[op.seq_hash] = [hit[0], 1]
            return 1
        self.fulls[op.seq_hash] = [self.pool.register(slot, op.plh), 1]
        self._register(op.plh, op.seq_hash)
        local = op.local_hash if op.local_hash is not None else 0
        self._publish(Stored(op.parent_hash, [StoredBlock(op.seq_hash, local)]))
        return 1

    # -- queries -----------------------------------------------------------------------------------

    def prefill_cost(self, sequence: ActiveSequence | SequenceSnapshot) -> PrefillCost:
        """Upstream M4.5: the longest prefix of full blocks that is held (active) or registered (inactive).

        Only with prefix caching on (random identities never match).  A trailing partial counts as
        a new block.  Token counts are capped at the prompt length.
        """
        snap = as_snapshot(sequence)
        overlap = active = 0
        if snap.enable_prefix_caching:
            for index, block in enumerate(snap.unique_blocks):
                if isinstance(block, PartialBlock):
                    break
                if block.hash in self.fulls:
                    overlap += 1
                    active += 1
                elif index < len(snap.plhs) and snap.plhs[index] in self.registry:
                    overlap += 1
                else:
                    break
        cached = min(overlap * self.block_size, snap.num_input_tokens)
        active_cached = min(active * self.block_size, snap.num_input_tokens)
        return PrefillCost(len(snap.unique_blocks) - overlap, snap.num_input_tokens - cached, cached, active_cached)

    # -- observers ---------------------------------------------------------------------------------

    def drain_events(self) -> list[KvCacheEvent]:
        out, self.events = self.events, []
        return out

    def num_active_blocks(self) -> int:
        """Distinct slots pinned by requests (``total - available`` in the pool)."""
        return self.pool.total_blocks() - self.pool.available_blocks()

    def num_active_block_refs(self) -> int:
        """References held by requests: one per partial, ``refs`` per full block."""
        return len(self.partials) + sum(refs for _, refs in self.fulls.values())

    def num_inactive_blocks(self) -> int:
        return self.pool.inactive_len()

    def active_refcounts(self) -> dict[int, int]:
        """Sequence hash -> references, for every full block held by requests."""
        return {h: refs for h, (_, refs) in self.fulls.items()}

    def eviction_order(self) -> list[int]:
        """Sequence hashes of the inactive blocks, next victim first."""
        return [self.registry[plh] for plh in self.pool.eviction_order()]
