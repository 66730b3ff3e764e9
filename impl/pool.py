"""Optimized block pool: same interface and observable behaviour as :mod:`kvspec.model.pool`.

Structures (N = total blocks):

* ``_free``: deque of free ids (FIFO; pop front, push back).
* ``_state``: bytearray, one state code per slot; ``_plh`` (list) / ``_refs`` / ``_pins`` (machine-int arrays): per slot
  (identity, caller references, number of duplicates pinning this primary).
* ``_pinned``: duplicate id -> the primary it pins.
* ``_live``: the live identity (primary, active *or* inactive) holding each lineage key
  ``(position, current)``, filed under ``current`` alone: ``current -> id``, the position being
  ``_plh[id].position`` (read anyway to compare the Plh).  Its key is the Plh's own ``current`` int,
  so a block costs no key object (a ``(position, current)`` tuple per block is one more scattered
  object to allocate, compare against on every hit and free); ``_clash`` holds, under the full
  tuple, the rare live key whose ``current`` is already filed for another position.  One index
  serves both questions — "which slot is this Plh's primary" (the key, then the full Plh
  compared) and "does another identity hold this key" (the impostor check) — and a third for
  :class:`kvspec.impl.manager.KvManager`, which finds a held block whose sequence hash is its own
  ``current`` through ``_live`` instead of a table of its own.
* ``_backend``: the inactive index (:mod:`kvspec.impl.eviction`).

Complexity: a key lookup (:meth:`_owner_at`) is one dict probe, two when ``_clash`` is not empty;
``allocate(n)`` O(n) plus the backend's evict cost; ``register`` O(1) + backend
remove; ``match_blocks(k)`` O(k) + resurrections; ``release`` O(1) + backend insert.  Observers:
``refcounts`` O(N) (a scan of ``_state``: no per-block set of held ids to keep up on the hot path),
``eviction_order`` as the backend's ``order()``.

Invariants (``_check``, O(N) plus the backend's check): every slot is in exactly one place — free deque (FREE), caller
(MUTABLE), held by callers (PRIMARY/DUPLICATE) or the backend (INACTIVE); ``_live`` and ``_clash`` index exactly
the PRIMARY/INACTIVE slots, each once, under its own Plh's ``current`` (``_live``) or key
(``_clash``, when ``_live`` filed that ``current`` for another position first); a primary's ``_pins`` equals the number of
duplicates naming it; an active primary has ``refs + pins > 0``; a duplicate has ``refs > 0``.
"""

from __future__ import annotations

from array import array
from collections import deque
from typing import Any

from kvspec import checks
from kvspec.checks import DEFAULT_THRESHOLDS
from kvspec.errors import BlockNotHeld, BlockStateError, DuplicateLineage
from kvspec.hashing import Plh
from kvspec.impl import frequency as frequency_mod
from kvspec.impl.eviction import BACKENDS, make_backend

__all__ = ["BlockPool"]

FREE, MUTABLE, PRIMARY, DUPLICATE, INACTIVE = range(5)
_HELD = (PRIMARY, DUPLICATE)  # the states a caller holds references on
_plh = checks.exact(Plh)


class BlockPool:
    """See :class:`kvspec.model.pool.BlockPool` for the rules; this class only makes them fast."""

    def __init__(self, total_blocks: int, *, eviction: str = "lineage", duplication: str = "allow",
                 frequency: Any = None, thresholds: tuple[int, int, int] = DEFAULT_THRESHOLDS):
        checks.pool_options(total_blocks, eviction, duplication, thresholds, BACKENDS)
        self._thresholds = tuple(thresholds)
        self._frequency = frequency_mod.make(frequency, total_blocks)
        self._eviction = eviction
        self._backend = self._make_backend(eviction)
        self._reject = duplication == "reject"
        self._total = total_blocks
        self._free: deque[int] = deque(range(total_blocks))
        self._state = bytearray(total_blocks)  # all FREE
        self._plh: list[Plh | None] = [None] * total_blocks
        self._refs = array("q", bytes(8 * total_blocks))  # machine ints: no int object per slot
        self._pins = array("q", bytes(8 * total_blocks))
        self._pinned: dict[int, int] = {}
        self._live: dict[int, int] = {}
        self._clash: dict[tuple[int, int], int] = {}

    def _make_backend(self, eviction: str) -> Any:
        return make_backend(eviction, self._frequency, self._thresholds)

    # -- helpers ----------------------------------------------------------------------------------

    def _file(self, plh: Plh, block_id: int) -> None:
        """Index a new live identity under its key (free of any other identity).  O(1)."""
        if plh.current in self._live:
            self._clash[plh.key] = block_id
        else:
            self._live[plh.current] = block_id

    def _unfile(self, plh: Plh, block_id: int) -> None:
        """Drop a live identity from the key index.  O(1)."""
        if self._live.get(plh.current) == block_id:
            del self._live[plh.current]
        else:
            del self._clash[plh.key]

    def _slot_at(self, position: int, current: int) -> int | None:
        """The slot of the live identity (active or inactive primary) holding key ``(position,
        current)``, or ``None``.  O(1): ``_live`` under ``current``, its owner's position compared;
        ``_clash`` only if not empty.  The one lookup of the key index."""
        block_id = self._live.get(current)
        if block_id is not None and self._plh[block_id].position == position:
            return block_id
        return self._clash.get((position, current)) if self._clash else None

    def _owner_at(self, position: int, current: int) -> Plh | None:
        """The live identity holding key ``(position, current)``, or ``None``.  O(1) (:meth:`_slot_at`)."""
        block_id = self._slot_at(position, current)
        return None if block_id is None else self._plh[block_id]

    def _primary_of(self, plh: Plh) -> int | None:
        """The id of ``plh``'s primary (active or inactive), or ``None``.  O(1) (:meth:`_slot_at`)."""
        block_id = self._slot_at(plh.position, plh.current)
        if block_id is None:
            return None
        live = self._plh[block_id]
        return block_id if live is plh or live == plh else None  # an impostor shares only the key

    def _owner_of_key(self, key: tuple[int, int]) -> Plh | None:
        """:meth:`_owner_at` for a ``(position, current)`` key."""
        return self._owner_at(*key)

    def _acquire(self, plh: Plh) -> int | None:
        block_id = self._primary_of(plh)
        if block_id is not None and self._state[block_id] == INACTIVE:
            self._backend.remove(plh)
            self._state[block_id] = PRIMARY
        return block_id

    def _deactivate_if_unheld(self, primary: int) -> None:
        if self._refs[primary] == 0 and self._pins[primary] == 0:
            self._state[primary] = INACTIVE
            self._backend.insert(self._plh[primary], primary)

    def _valid_id(self, block_id: Any) -> bool:
        """A block id of the right type (else :class:`InvalidArgument`) that names a slot."""
        return 0 <= checks.block_id("block_id", block_id) < self._total

    # -- allocation -------------------------------------------------------------------------------

    def allocate(self, n: int) -> list[int] | None:
        result = self.allocate_with_evictions(n)
        return None if result is None else result[0]

    def allocate_with_evictions(self, n: int) -> tuple[list[int], list[Plh]] | None:
        checks.count("n", n)
        free, backend, state = self._free, self._backend, self._state
        if len(free) + len(backend) < n:
            return None
        take = min(n, len(free))
        ids = [free.popleft() for _ in range(take)]
        for block_id in ids:
            state[block_id] = MUTABLE
        evicted: list[Plh] = []
        for _ in range(n - take):
            plh, block_id = backend.evict()
            self._unfile(plh, block_id)
            state[block_id] = MUTABLE
            self._plh[block_id] = None
            ids.append(block_id)
            evicted.append(plh)
        return ids, evicted

    def release_mutable(self, block_id: int) -> None:
        if not self._valid_id(block_id) or self._state[block_id] != MUTABLE:
            raise BlockStateError(f"block {block_id} is not an allocated mutable block")
        self._state[block_id] = FREE
        self._free.append(block_id)

    # -- registration -----------------------------------------------------------------------------

    def register(self, block_id: int, plh: Plh) -> int:
        valid = self._valid_id(block_id)
        _plh("plh", plh)
        if not valid or self._state[block_id] != MUTABLE:
            raise BlockStateError(f"block {block_id} is not an allocated mutable block")
        owner = self._owner_at(plh.position, plh.current)
        if owner is not None and owner != plh:
            raise DuplicateLineage(f"{plh} has the lineage key of live identity {owner}")
        if owner is None:
            if self._frequency is not None:
                self._frequency.touch(plh)  # a new registration handle
            self._state[block_id] = PRIMARY
            self._plh[block_id] = plh
            self._refs[block_id] = 1
            self._file(plh, block_id)
            return block_id
        existing = self._acquire(plh)
        if not self._reject:
            self._state[block_id] = DUPLICATE
            self._plh[block_id] = plh
            self._refs[block_id] = 1
            self._pinned[block_id] = existing
            self._pins[existing] += 1
            return block_id
        self._state[block_id] = FREE
        self._free.append(block_id)
        self._refs[existing] += 1
        return existing

    # -- lookups ----------------------------------------------------------------------------------

    def _plh_list(self, plhs: Any) -> tuple[Plh, ...]:
        return checks.sequence("plhs", plhs, _plh)

    def match_blocks(self, plhs: list[Plh]) -> list[int]:
        plhs = self._plh_list(plhs)
        out: list[int] = []
        refs = self._refs
        for plh in plhs:
            block_id = self._acquire(plh)
            if block_id is None:
                break
            refs[block_id] += 1
            out.append(block_id)
        if self._frequency is not None:
            touch = self._frequency.touch
            for plh in plhs[: len(out)]:
                touch(plh)
        return out

    def check_presence(self, plhs: list[Plh]) -> list[bool]:
        # a duplicate always pins a live primary, so "some slot holds plh" == "plh has a primary"
        _primary_of = self._primary_of
        return [_primary_of(plh) is not None for plh in self._plh_list(plhs)]

    # -- release ----------------------------------------------------------------------------------

    def release(self, block_id: int) -> None:
        if not self._valid_id(block_id) or self._state[block_id] not in _HELD or self._refs[block_id] == 0:
            raise BlockNotHeld(f"block {block_id} holds no reference to release")
        refs = self._refs
        refs[block_id] -= 1
        if refs[block_id]:
            return
        if self._state[block_id] == PRIMARY:
            self._deactivate_if_unheld(block_id)
            return
        primary = self._pinned.pop(block_id)
        self._state[block_id] = FREE
        self._plh[block_id] = None
        self._free.append(block_id)
        self._pins[primary] -= 1
        self._deactivate_if_unheld(primary)

    # -- observers --------------------------------------------------------------------------------

    def total_blocks(self) -> int:
        return self._total

    def available_blocks(self) -> int:
        return len(self._free) + len(self._backend)

    def inactive_len(self) -> int:
        return len(self._backend)

    def refcounts(self) -> dict[int, int]:
        """O(N): a scan of the state codes (a set of held ids would cost every block a set entry)."""
        refs, state = self._refs, self._state
        return {i: refs[i] for i in range(self._total) if state[i] in _HELD}

    def eviction_order(self) -> list[Plh]:
        return self._backend.order()

    def free_blocks(self) -> list[int]:
        return list(self._free)

    # -- invariants -------------------------------------------------------------------------------

    def _check(self) -> None:
        self._backend._check()
        if hasattr(self._frequency, "_check"):
            self._frequency._check()
        counts = [0] * 5
        for code in self._state:
            counts[code] += 1
        assert counts[FREE] == len(self._free) == len(set(self._free))
        assert all(self._state[i] == FREE for i in self._free)
        assert counts[INACTIVE] == len(self._backend)
        assert counts[PRIMARY] + counts[INACTIVE] == len(self._live) + len(self._clash)
        filed = [*self._live.values(), *self._clash.values()]
        assert len(set(filed)) == len(filed), "a slot filed twice"
        assert len({self._plh[block_id].key for block_id in filed}) == len(filed), "two live identities share a key"
        for current, block_id in self._live.items():
            assert self._state[block_id] in (PRIMARY, INACTIVE) and self._plh[block_id].current == current
        for key, block_id in self._clash.items():
            assert self._state[block_id] in (PRIMARY, INACTIVE) and self._plh[block_id].key == key
        pins = [0] * self._total
        for dup, primary in self._pinned.items():
            assert self._state[dup] == DUPLICATE and self._state[primary] == PRIMARY
            assert self._plh[dup] == self._plh[primary]
            pins[primary] += 1
        assert pins == self._pins.tolist(), "pin counts disagree with the duplicates"
        for block_id in (i for i in range(self._total) if self._state[i] in _HELD):
            if self._state[block_id] == PRIMARY:
                assert self._refs[block_id] + self._pins[block_id] > 0, f"unheld active primary {block_id}"
            else:
                assert self._refs[block_id] > 0, f"unheld duplicate {block_id}"
        assert len(self._pinned) == counts[DUPLICATE]

