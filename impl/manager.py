"""The mocker's G1 KV manager, optimized.  Same interface and observable behaviour as the model.

Structures (invariants checked by :meth:`KvManager._check`):

* ``_partials``: uuid -> slot (a mutable pool slot).  O(1).
* ``_fulls``: sequence hash -> ``refs << 32 | block id`` with ``refs >= 1`` (one int, not a
  ``[block id, refs]`` list: a list per held block is a container the cyclic GC scans at every full
  collection); the manager holds exactly one pool reference per entry.  O(1).
* ``_refs``: ``len(_partials) + sum(refs)``, kept incrementally (O(1) observer).
* ``_slot_hash``: block id -> the sequence hash it was registered under, read only while that
  block is a live identity of the pool (registered, not evicted: what the router was told).  The
  pool's own key index answers "is this Plh registered" (:meth:`BlockPool._primary_of`) and "who
  holds this lineage key" (:meth:`BlockPool._owner_at`), so the manager keeps no map per
  registered block of its own: a one-slot allocation that evicts returns the victim's own slot,
  whose ``_slot_hash`` is the victim's hash.

Costs: ``Use`` is O(len(blocks)) plus the pool's own costs (no scan of the manager's state: the
"was this block registered before this Use" question is answered from the Use's own eviction
log, because a block that is newly stored but was registered at the start must have been evicted
by this very Use); ``Deref`` O(len(blocks)); ``Promote`` O(1) plus the pool.  Observers that list
state (``active_refcounts``, ``eviction_order``) are O(n).

Rules, events and errors: exactly the model's (``kvspec.model.manager``), including kvspec's
parent anchoring (one Stored per run of new blocks, anchored to the block before the run) and the
net-event rule for a block evicted and stored again within one Use.
"""

from __future__ import annotations

from array import array

from kvspec import checks
from kvspec.errors import BlockNotHeld, DuplicateLineage, UnknownPartialBlock
from kvspec.events import KvCacheEvent, Removed, Stored, StoredBlock
from kvspec.impl.eviction import BACKENDS
from kvspec.impl.pool import BlockPool
from kvspec.protocol import Deref, FullBlock, PartialBlock, Promote, Use
from kvspec.sequence import PrefillCost, as_snapshot

__all__ = ["KvManager"]

_OPERATIONS = (Use, Deref, Promote)

#: ``_fulls`` packs a held block as ``refs << _SLOT_BITS | block id``: adding ``_REF`` is one more reference
_SLOT_BITS = 32
_SLOT_MASK = (1 << _SLOT_BITS) - 1
_REF = 1 << _SLOT_BITS


class KvManager:
    """The G1 mocker KV manager (optimized)."""

    def __init__(self, capacity: int, block_size: int = 16, *, eviction: str = "lineage", dp_rank: int = 0,
                 frequency=None):
        frequency = checks.kv_manager_options(capacity, block_size, dp_rank, eviction, frequency, BACKENDS)
        self._capacity = capacity
        self._block_size = block_size
        self._dp_rank = dp_rank
        self._pool = BlockPool(capacity, eviction=eviction, frequency=frequency)
        self._partials: dict[int, int] = {}
        self._fulls: dict[int, int] = {}
        self._refs = 0
        self._slot_hash = array("Q", bytes(8 * capacity))  # u64 hashes stored inline, no int object per slot
        self._events: list[KvCacheEvent] = []
        self._next_event_id = 0

    def _publish(self, data) -> None:
        self._events.append(KvCacheEvent(self._next_event_id, data, self._dp_rank))
        self._next_event_id += 1

    # -- validation ------------------------------------------------------------------------------

    def _check_lineage(self, plhs) -> None:
        """No Plh of ``plhs`` shares its lineage key with a live identity or an earlier one of ``plhs``.  O(len)."""
        _owner_at = self._pool._owner_at
        local: dict = {}
        for plh in plhs:
            other = _owner_at(plh.position, plh.current)
            if other is None:
                other = local.setdefault(plh.key, plh)
            if other != plh:
                raise DuplicateLineage(f"{plh} shares lineage key {plh.key} with {other}")

    # -- slots -----------------------------------------------------------------------------------

    def _take_slot(self, evicted: list, evicted_hash: dict) -> int | None:
        """One slot, evicting the pool's next victim when none is free (noted in ``evicted``).  O(1) + the pool."""
        got = self._pool.allocate_with_evictions(1)
        if got is None:
            return None
        (slot,), victims = got
        for victim in victims:  # at most one: a one-slot allocation hands out its victim's own slot
            vh = self._slot_hash[slot]
            evicted.append((victim, vh))
            evicted_hash[victim] = vh
        return slot

    def _registered_hash(self, plh) -> int | None:
        """The sequence hash ``plh`` is registered under, ``None`` if it is not live.  O(1)."""
        block_id = self._pool._primary_of(plh)
        return None if block_id is None else self._slot_hash[block_id]

    # -- protocol --------------------------------------------------------------------------------

    def process(self, op) -> int:
        kind = checks.operation("KvManager", op, _OPERATIONS)
        if kind is Use:
            checks.use_lengths("KvManager", op)
            checks.use_parent("KvManager", op)
            return self._use(op)
        if kind is Deref:
            return self._deref(op)
        return self._promote(op)

    def _use(self, op: Use) -> int:
        blocks = op.blocks
        plhs = op.plhs
        local_hashes = op.local_hashes
        parent = op.parent
        self._check_lineage(plhs)

        pool, fulls, partials, slot_hash = self._pool, self._fulls, self._partials, self._slot_hash
        evicted: list = []  # (plh, seq hash) in eviction order
        evicted_hash: dict = {}  # plh -> seq hash it had when this Use evicted it
        events: list = []
        run: list = []
        anchor = parent.hash if parent is not None else None
        run_anchor = anchor
        processed = 0
        j = 0
        for block in blocks:
            if type(block) is FullBlock:
                h = block.hash
                plh = plhs[j]
                lh = local_hashes[j] if local_hashes else 0
                j += 1
                entry = fulls.get(h)
                new = False
                if entry is not None:
                    fulls[h] = entry + _REF
                else:
                    hit = pool.match_blocks([plh])
                    if hit:
                        fulls[h] = _REF | hit[0]
                    else:
                        slot = self._take_slot(evicted, evicted_hash)
                        if slot is None:
                            break
                        fulls[h] = _REF | pool.register(slot, plh)
                        slot_hash[slot] = h
                        new = evicted_hash.get(plh) != h
                self._refs += 1
                if new:
                    if not run:
                        run_anchor = anchor
                    run.append(StoredBlock(h, lh))
                elif run:
                    events.append(Stored(run_anchor, tuple(run)))
                    run = []
                anchor = h
            elif block.uuid not in partials:
                slot = self._take_slot(evicted, evicted_hash)
                if slot is None:
                    break
                partials[block.uuid] = slot
                self._refs += 1
            processed += 1
        if run:
            events.append(Stored(run_anchor, tuple(run)))
        for data in events:
            self._publish(data)
        if evicted:
            registered = self._registered_hash
            removed = tuple(vh for victim, vh in evicted if registered(victim) != vh)
            if removed:
                self._publish(Removed(removed))
        return processed

    def _deref(self, op: Deref) -> int:
        blocks = op.blocks
        partials, fulls = self._partials, self._fulls
        if len(blocks) == 1:  # the sequence's only shape: O(1) validation
            (block,) = blocks
            if type(block) is PartialBlock:
                if block.uuid not in partials:
                    raise BlockNotHeld(f"Deref: {block!r} is not held")
            elif block.hash not in fulls:
                raise BlockNotHeld(f"Deref: {block!r} is not held")
        else:
            wanted: dict = {}
            for block in blocks:
                wanted[block] = wanted.get(block, 0) + 1
            for block, count in wanted.items():
                if type(block) is PartialBlock:
                    held = 1 if block.uuid in partials else 0
                else:
                    entry = fulls.get(block.hash)
                    held = entry >> _SLOT_BITS if entry is not None else 0
                if count > held:
                    raise BlockNotHeld(f"Deref: {block!r} named {count} times, held {held} times")
        pool = self._pool
        for block in blocks:
            self._refs -= 1
            if type(block) is PartialBlock:
                pool.release_mutable(partials.pop(block.uuid))
                continue
            entry = fulls[block.hash] - _REF
            if entry >= _REF:
                fulls[block.hash] = entry
            else:  # the last reference: entry is the block id
                del fulls[block.hash]
                pool.release(entry)
        return 1  # upstream's process() returns 1 for every Deref

    def _promote(self, op: Promote) -> int:
        slot = self._partials.get(op.uuid)
        if slot is None:
            raise UnknownPartialBlock(f"Promote: partial block {op.uuid} is not held")
        plh = op.plh
        self._check_lineage((plh,))
        del self._partials[op.uuid]
        h = op.seq_hash
        entry = self._fulls.get(h)
        if entry is not None:
            self._pool.release_mutable(slot)
            self._fulls[h] = entry + _REF
            return 1
        hit = self._pool.match_blocks([plh])
        if hit:
            self._pool.release_mutable(slot)
            self._fulls[h] = _REF | hit[0]
            return 1
        self._fulls[h] = _REF | self._pool.register(slot, plh)
        self._slot_hash[slot] = h
        local = op.local_hash if op.local_hash is not None else 0
        self._publish(Stored(op.parent_hash, (StoredBlock(h, local),)))
        return 1

    # -- queries ---------------------------------------------------------------------------------

    def prefill_cost(self, sequence) -> PrefillCost:
        snap = as_snapshot(sequence)
        overlap = active = 0
        if snap.enable_prefix_caching:
            fulls, _primary_of, plhs = self._fulls, self._pool._primary_of, snap.plhs
            for index, block in enumerate(snap.unique_blocks):
                if type(block) is PartialBlock:
                    break
                if block.hash in fulls:
                    overlap += 1
                    active += 1
                elif index < len(plhs) and _primary_of(plhs[index]) is not None:
                    overlap += 1
                else:
                    break
        bs, n_in = self._block_size, snap.num_input_tokens
        cached = min(overlap * bs, n_in)
        return PrefillCost(len(snap.unique_blocks) - overlap, n_in - cached, cached, min(active * bs, n_in))

    # -- observers -------------------------------------------------------------------------------

    def drain_events(self) -> list[KvCacheEvent]:
        out, self._events = self._events, []
        return out

    def num_active_blocks(self) -> int:
        return self._pool.total_blocks() - self._pool.available_blocks()

    def num_active_block_refs(self) -> int:
        return self._refs

    def num_inactive_blocks(self) -> int:
        return self._pool.inactive_len()

    def active_refcounts(self) -> dict[int, int]:
        return {h: entry >> _SLOT_BITS for h, entry in self._fulls.items()}

    def eviction_order(self) -> list[int]:
        registered = self._registered_hash
        return [registered(plh) for plh in self._pool.eviction_order()]

    def _slots_held_elsewhere(self) -> int:
        """Allocated slots no request holds (a subclass's withheld or reserved slots); 0 here."""
        return 0

    def _held_full_slots(self) -> set[int]:
        """The block ids the held full blocks pin (O(held))."""
        return {entry & _SLOT_MASK for entry in self._fulls.values()}

    def _check(self) -> None:
        """Every invariant of the module docstring, and the pool's: O(n) for n blocks."""
        assert self._refs == len(self._partials) + sum(e >> _SLOT_BITS for e in self._fulls.values()), "ref counter"
        assert all(e >= _REF for e in self._fulls.values()), "a held full block has no reference"
        slots = list(self._partials.values())
        assert len(set(slots)) == len(slots), "two partials share a slot"
        held_full_ids = self._held_full_slots()
        assert not (set(slots) & held_full_ids), "a slot is both partial and full"
        assert len(self._slot_hash) == self._capacity, "one registered hash per slot"
        assert self.num_active_blocks() == len(slots) + len(held_full_ids) + self._slots_held_elsewhere(), \
            "pinned slot count"
        if hasattr(self._pool, "_check"):
            self._pool._check()
