"""The mocker's G1 KV manager, optimized.  Same interface and observable behaviour as the model.

Structures (invariants checked by :meth:`KvManager._check`):

* ``_partials``: uuid -> slot (a mutable pool slot).  O(1).
* Held full blocks, sequence hash -> (references >= 1, block id), the manager holding exactly one
  pool reference per held hash, in one of two places (never both):

  - ``_held[slot]`` (machine ints, one per slot), the common case: the hash ``h`` held on the
    pool primary that the pool's key index files under ``current == h`` (``BlockPool._live[h] ==
    slot``), i.e. the hash is its own block's lineage ``current``, as it is for every block of an
    :class:`~kvspec.sequence.ActiveSequence`.  Found through the pool's own index, so such a block
    costs the manager no dict entry: a second table of a million entries, probed at random with
    the same keys, costs a cache miss per probe (``kvspec bench lifecycle`` measures the per-block
    time from 1k to 1M blocks).  At most one such hash per slot.
  - ``_fulls``: hash -> ``refs << 32 | block id`` for every other held hash (a hash that is not
    its block's ``current``, or whose key the pool files as a clash): usually empty.  One int,
    not a ``[block id, refs]`` list: a list per held block is a container the GC scans.

  :meth:`_held_at` finds either in O(1): ``_fulls`` first (a dict that is usually empty is a probe
  into one cached line), then ``_held[_live[h]]``.
* ``_refs``: ``len(_partials) + sum(refs)``, kept incrementally (O(1) observer).
* ``_slot_hash``: block id -> the sequence hash it was registered under, read only while that
  block is a live identity of the pool (registered, not evicted: what the router was told).  The
  pool's own key index answers "is this Plh registered" (:meth:`BlockPool._primary_of`) and "who
  holds this lineage key" (:meth:`BlockPool._owner_at`), so the manager keeps no map per
  registered block of its own: a one-slot allocation that evicts returns the victim's own slot,
  whose ``_slot_hash`` is the victim's hash.

Costs: a held-hash lookup is O(1) (:meth:`_held_at`); ``Use`` is O(len(blocks)) plus the pool's own
costs (no scan of the manager's state: the "was this block registered before this Use" question
is answered from the Use's own eviction log, because a block that is newly stored but was
registered at the start must have been evicted by this very Use); ``Deref`` O(len(blocks)); ``Promote`` O(1) plus the pool.  Observers that list
state are O(n): ``eviction_order`` in the inactive blocks, ``active_refcounts`` in the capacity (a
scan of ``_held``, which spares the hot path a table of held hashes).

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
        self._held = array("q", bytes(8 * capacity))  # machine ints: no int object per slot
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

    def _held_at(self, h: int) -> tuple[int, int] | None:
        """``(references, block id)`` of held hash ``h``, or ``None``.  O(1)."""
        entry = self._fulls.get(h)
        if entry is not None:
            return entry >> _SLOT_BITS, entry & _SLOT_MASK
        slot = self._pool._live.get(h)
        if slot is not None and self._held[slot]:
            return self._held[slot], slot
        return None

    def _hold_new(self, h: int, slot: int) -> None:
        """Record the first reference of hash ``h`` (not held) on ``slot``, where the rules of the module docstring say.  O(1)."""
        if self._pool._live.get(h) == slot:
            self._held[slot] = 1
        else:
            self._fulls[h] = _REF | slot

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

        pool, fulls, partials, slot_hash, held = self._pool, self._fulls, self._partials, self._slot_hash, self._held
        live = pool._live
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
                new = False
                entry = fulls.get(h) if fulls else None  # _held_at, inlined: the hot path
                slot = live.get(h) if entry is None else None
                if entry is not None:
                    fulls[h] = entry + _REF
                elif slot is not None and held[slot]:
                    held[slot] += 1
                else:
                    hit = pool.match_blocks([plh])
                    if hit:
                        got = hit[0]
                    else:
                        slot = self._take_slot(evicted, evicted_hash)
                        if slot is None:
                            break
                        got = pool.register(slot, plh)
                        slot_hash[slot] = h
                        new = evicted_hash.get(plh) != h
                    if live.get(h) == got:  # _hold_new, inlined: the hot path
                        held[got] = 1
                    else:
                        fulls[h] = _REF | got
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
        partials, held_at = self._partials, self._held_at
        if len(blocks) == 1:  # the sequence's only shape: O(1) validation
            (block,) = blocks
            if type(block) is FullBlock and not self._fulls:  # _held_at inlined: the hot path
                slot = self._pool._live.get(block.hash)
                if slot is None or not self._held[slot]:
                    raise BlockNotHeld(f"Deref: {block!r} is not held")
                self._refs -= 1
                self._held[slot] -= 1
                if not self._held[slot]:
                    self._pool.release(slot)
                return 1
            if type(block) is PartialBlock:
                if block.uuid not in partials:
                    raise BlockNotHeld(f"Deref: {block!r} is not held")
            elif held_at(block.hash) is None:
                raise BlockNotHeld(f"Deref: {block!r} is not held")
        else:
            wanted: dict = {}
            for block in blocks:
                wanted[block] = wanted.get(block, 0) + 1
            for block, count in wanted.items():
                if type(block) is PartialBlock:
                    times = 1 if block.uuid in partials else 0
                else:
                    found = held_at(block.hash)
                    times = found[0] if found is not None else 0
                if count > times:
                    raise BlockNotHeld(f"Deref: {block!r} named {count} times, held {times} times")
        pool, fulls, held = self._pool, self._fulls, self._held
        for block in blocks:
            self._refs -= 1
            if type(block) is PartialBlock:
                pool.release_mutable(partials.pop(block.uuid))
                continue
            h = block.hash
            entry = fulls.get(h) if fulls else None
            if entry is None:  # held on its own slot
                slot = pool._live[h]
                held[slot] -= 1
                if not held[slot]:
                    pool.release(slot)
                continue
            entry -= _REF
            if entry >= _REF:
                fulls[h] = entry
            else:  # the last reference: entry is the block id
                del fulls[h]
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
        found = self._held_at(h)
        if found is not None:
            self._pool.release_mutable(slot)
            if h in self._fulls:
                self._fulls[h] += _REF
            else:
                self._held[found[1]] += 1
            return 1
        hit = self._pool.match_blocks([plh])
        if hit:
            self._pool.release_mutable(slot)
            self._hold_new(h, hit[0])
            return 1
        self._hold_new(h, self._pool.register(slot, plh))
        self._slot_hash[slot] = h
        local = op.local_hash if op.local_hash is not None else 0
        self._publish(Stored(op.parent_hash, (StoredBlock(h, local),)))
        return 1

    # -- queries ---------------------------------------------------------------------------------

    def prefill_cost(self, sequence) -> PrefillCost:
        snap = as_snapshot(sequence)
        overlap = active = 0
        if snap.enable_prefix_caching:
            held_at, _primary_of, plhs = self._held_at, self._pool._primary_of, snap.plhs
            for index, block in enumerate(snap.unique_blocks):
                if type(block) is PartialBlock:
                    break
                if held_at(block.hash) is not None:
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

    def _held_slots(self) -> list[int]:
        """The slots holding their own ``current`` as a held hash (a scan of ``_held``: O(capacity))."""
        held = self._held
        return [slot for slot in range(self._capacity) if held[slot]]

    def active_refcounts(self) -> dict[int, int]:
        """O(capacity + held): both places of the module docstring."""
        out = {self._pool._plh[slot].current: self._held[slot] for slot in self._held_slots()}
        out.update((h, entry >> _SLOT_BITS) for h, entry in self._fulls.items())
        return out

    def _holds(self, h: int) -> bool:
        """Whether sequence hash ``h`` is a held full block.  O(1)."""
        return self._held_at(h) is not None

    def eviction_order(self) -> list[int]:
        registered = self._registered_hash
        return [registered(plh) for plh in self._pool.eviction_order()]

    def _slots_held_elsewhere(self) -> int:
        """Allocated slots no request holds (a subclass's withheld or reserved slots); 0 here."""
        return 0

    def _held_full_slots(self) -> set[int]:
        """The block ids the held full blocks pin (O(capacity + held))."""
        return {entry & _SLOT_MASK for entry in self._fulls.values()} | set(self._held_slots())

    def _check(self) -> None:
        """Every invariant of the module docstring, and the pool's: O(n) for n blocks."""
        live, plh_of = self._pool._live, self._pool._plh
        own = self._held_slots()
        assert self._refs == len(self._partials) + sum(e >> _SLOT_BITS for e in self._fulls.values()) + \
            sum(self._held[slot] for slot in own), "ref counter"
        assert all(e >= _REF for e in self._fulls.values()), "a held full block has no reference"
        assert all(n >= 0 for n in self._held), "a negative held count"
        for slot in own:  # held on its own slot: filed under its own current, and not in _fulls too
            assert live.get(plh_of[slot].current) == slot, f"slot {slot} held as its own current but not filed so"
            assert plh_of[slot].current not in self._fulls, f"hash {plh_of[slot].current} held in both places"
        for h, entry in self._fulls.items():  # a hash _held would find belongs there, not here
            assert live.get(h) != entry & _SLOT_MASK, f"hash {h} in _fulls, but it is its slot's own current"
        slots = list(self._partials.values())
        assert len(set(slots)) == len(slots), "two partials share a slot"
        held_full_ids = self._held_full_slots()
        assert not (set(slots) & held_full_ids), "a slot is both partial and full"
        assert len(self._slot_hash) == self._capacity, "one registered hash per slot"
        assert self.num_active_blocks() == len(slots) + len(held_full_ids) + self._slots_held_elsewhere(), \
            "pinned slot count"
        if hasattr(self._pool, "_check"):
            self._pool._check()
