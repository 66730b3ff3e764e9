"""Reference model of kvbm-logical's block pool (``BlockManager`` over a ``BlockStore``; ``docs/upstream.md`` P3-P9).

A pool owns ``total_blocks`` slots, ids ``0..N-1``.  Each slot is in exactly one state:

* ``FREE``      — in the free FIFO (upstream "Reset");
* ``MUTABLE``   — allocated to a caller, no identity yet (upstream Mutable/Staged);
* ``PRIMARY``   — registered, the block that ``match_blocks`` returns for its :class:`Plh`;
* ``DUPLICATE`` — registered under ``duplication="allow"`` while its Plh was already live; it pins
  its primary (a *keepalive* reference) and is never cached;
* ``INACTIVE``  — a released primary, cached in the eviction backend, reusable by a match.

The API is value based: a "handle" is one reference on a block id.  ``register`` and every
``match_blocks`` hit hand the caller one reference; ``release`` drops one.  Bad input raises a
:mod:`kvspec.errors` error before anything changes.  Checks run in this order: argument types
(:class:`InvalidArgument`), then slot states (:class:`BlockStateError` /
:class:`BlockNotHeld`), then lineage conflicts (:class:`DuplicateLineage`).

**Impostors** (``docs/decisions.md`` D7): upstream's lineage graph is keyed by ``(position,
current)`` and panics with "Hash collision" when a second Real node claims a key.  kvspec refuses
such a block one step earlier: ``register(block, plh)`` raises :class:`DuplicateLineage` when
another *live* identity (an active or inactive primary) has the same ``plh.key`` but a different
full Plh.  So at most one identity per key is ever live, and the graph can never collide.
Lookups (``match_blocks``, ``check_presence``) compare full Plhs, so an impostor simply misses.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from kvspec import checks
from kvspec.errors import BlockNotHeld, BlockStateError, DuplicateLineage
from kvspec.hashing import Plh
from kvspec.model import frequency as frequency_mod
from kvspec.model.eviction import BACKENDS, DEFAULT_THRESHOLDS, make_backend

__all__ = ["BlockPool", "DUPLICATIONS"]

FREE, MUTABLE, PRIMARY, DUPLICATE, INACTIVE = "free", "mutable", "primary", "duplicate", "inactive"

DUPLICATIONS = checks.DUPLICATIONS

_plh = checks.exact(Plh)


class BlockPool:
    """The block pool.  See the module docstring for states and error rules.

    ``eviction``: a name of :data:`kvspec.model.eviction.BACKENDS` (``"lineage"``, the Tick leaf
    policy, is upstream's default; ``"multi_lru"`` needs a frequency tracker).  ``duplication``: ``"allow"``
    (default) or ``"reject"``.  ``frequency``: ``None``, ``"exact"`` (decay sized from
    ``total_blocks``), ``"exact:<n>"`` or a tracker object (:mod:`kvspec.model.frequency`).  ``thresholds``: MultiLRU tier thresholds ``(a, b, c)`` with
    ``1 <= a < b < c <= 15`` (upstream's ``with_multi_lru_backend_custom_thresholds``), checked for
    every backend, used only by MultiLRU.
    """

    def __init__(self, total_blocks: int, *, eviction: str = "lineage", duplication: str = "allow",
                 frequency: Any = None, thresholds: tuple[int, int, int] = DEFAULT_THRESHOLDS):
        checks.pool_options(total_blocks, eviction, duplication, thresholds, BACKENDS)
        self.frequency = frequency_mod.make(frequency, total_blocks)
        self.inactive = make_backend(eviction, self.frequency, thresholds)
        self.duplication = duplication
        self.total = total_blocks
        self.free: deque[int] = deque(range(total_blocks))  # upstream P4: FIFO, fresh pool hands out 0,1,2,...
        self.state: dict[int, str] = {i: FREE for i in range(total_blocks)}
        self.plh: dict[int, Plh] = {}  # registered slots (primary, duplicate, inactive) -> identity
        self.refs: dict[int, int] = {}  # primary/duplicate -> references held by callers
        self.keepalive: dict[int, int] = {}  # duplicate -> the primary it pins
        # lineage key -> the slot of the live identity holding it (a PRIMARY or INACTIVE slot); at
        # most one identity per key is live (the impostor rule), so the key names it
        self.live: dict[tuple[int, int], int] = {}

    # -- lookups used by the rules --------------------------------------------------------------

    def _primary_of(self, plh: Plh) -> int | None:
        """The slot that is *the* block of ``plh`` (active or inactive), if any."""
        block_id = self.live.get(plh.key)
        return block_id if block_id is not None and self.plh[block_id] == plh else None

    def _holders(self, primary: int) -> int:
        """Strong references on a primary: callers' references plus one per pinning duplicate."""
        return self.refs[primary] + sum(1 for p in self.keepalive.values() if p == primary)

    def _acquire(self, plh: Plh) -> int | None:
        """Upstream P7 ``acquire_for_hash``: the primary of ``plh``, resurrected if inactive (no new reference)."""
        block_id = self._primary_of(plh)
        if block_id is not None and self.state[block_id] == INACTIVE:
            self.inactive.remove(plh)
            self.state[block_id] = PRIMARY
            self.refs[block_id] = 0
        return block_id

    def _touch(self, plh: Plh) -> None:
        if self.frequency is not None:
            self.frequency.touch(plh)

    def _to_mutable(self, block_id: int) -> None:
        """An evicted inactive primary: its identity is no longer live."""
        self.state[block_id] = MUTABLE
        del self.live[self.plh.pop(block_id).key]

    def _to_free(self, block_id: int) -> None:
        """Every return goes to the *tail* of the free FIFO (upstream P4)."""
        self.state[block_id] = FREE
        self.plh.pop(block_id, None)
        self.free.append(block_id)

    def _maybe_deactivate(self, primary: int) -> None:
        """Upstream P8: a primary whose last strong reference went away becomes inactive (is cached)."""
        if self._holders(primary) == 0:
            del self.refs[primary]
            self.state[primary] = INACTIVE
            self.inactive.insert(self.plh[primary], primary)


    # -- allocation -------------------------------------------------------------------------------

    def allocate(self, n: int) -> list[int] | None:
        """``allocate_blocks(n)``: :meth:`allocate_with_evictions` without the evicted identities."""
        result = self.allocate_with_evictions(n)
        return None if result is None else result[0]

    def allocate_with_evictions(self, n: int) -> tuple[list[int], list[Plh]] | None:
        """Upstream P5: all or nothing.  Free slots first (front of the FIFO), then inactive blocks in the
        backend's eviction order.  Returns ``(ids, evicted plhs in eviction order)``, or ``None``
        (nothing changed) when ``free + inactive < n``.
        """
        checks.count("n", n)
        if len(self.free) + len(self.inactive) < n:
            return None
        ids: list[int] = []
        evicted: list[Plh] = []
        while len(ids) < n and self.free:
            block_id = self.free.popleft()
            self.state[block_id] = MUTABLE
            ids.append(block_id)
        while len(ids) < n:
            plh, block_id = self.inactive.evict()
            self._to_mutable(block_id)
            ids.append(block_id)
            evicted.append(plh)
        return ids, evicted

    def release_mutable(self, block_id: int) -> None:
        """Drop an allocated, never registered block: it goes to the tail of the free FIFO."""
        checks.block_id("block_id", block_id)
        if self.state.get(block_id) != MUTABLE:
            raise BlockStateError(f"block {block_id} is not an allocated mutable block")
        self._to_free(block_id)

    # -- registration -----------------------------------------------------------------------------

    def register(self, block_id: int, plh: Plh) -> int:
        """Upstream P6: give a mutable block its identity; returns the id the caller now holds one reference on.

        * ``plh`` not live -> the block becomes its primary (returns ``block_id``);
        * ``plh`` live (active, or inactive -> resurrected) and ``duplication="allow"`` -> the block
          becomes a duplicate pinning the primary (returns ``block_id``);
        * ``plh`` live and ``duplication="reject"`` -> the block goes to the free tail and the
          caller gets a reference on the primary (returns the primary's id).

        The frequency tracker is touched only when no block of ``plh`` was live (upstream creates a
        new registration handle exactly then).
        """
        checks.block_id("block_id", block_id)
        _plh("plh", plh)
        if self.state.get(block_id) != MUTABLE:
            raise BlockStateError(f"block {block_id} is not an allocated mutable block")
        owner = self.live.get(plh.key)
        if owner is not None and self.plh[owner] != plh:
            raise DuplicateLineage(f"{plh} has the lineage key of live block {owner} ({self.plh[owner]})")

        if self._primary_of(plh) is None:
            self._touch(plh)
        existing = self._acquire(plh)
        if existing is None:
            self.state[block_id], self.plh[block_id], self.refs[block_id] = PRIMARY, plh, 1
            self.live[plh.key] = block_id
            return block_id
        if self.duplication == "allow":
            self.state[block_id], self.plh[block_id], self.refs[block_id] = DUPLICATE, plh, 1
            self.keepalive[block_id] = existing
            return block_id
        self._to_free(block_id)
        self.refs[existing] += 1
        return existing

    # -- lookups ----------------------------------------------------------------------------------

    def match_blocks(self, plhs: list[Plh]) -> list[int]:
        """Upstream P7: the primaries of the longest prefix of ``plhs`` that is live, one reference each.

        Inactive hits are resurrected.  Every hit touches the frequency tracker once.
        """
        plhs = checks.sequence("plhs", plhs, _plh)
        out: list[int] = []
        for plh in plhs:
            block_id = self._acquire(plh)
            if block_id is None:
                break
            self.refs[block_id] += 1
            out.append(block_id)
        for block_id in out:
            self._touch(self.plh[block_id])
        return out

    def check_presence(self, plhs: list[Plh]) -> list[bool]:
        """Upstream P9: per identity, is some primary, duplicate or inactive block holding it?  Read only."""
        plhs = checks.sequence("plhs", plhs, _plh)
        live = {self.plh[i] for i, s in self.state.items() if s in (PRIMARY, DUPLICATE, INACTIVE)}
        return [plh in live for plh in plhs]

    # -- release ----------------------------------------------------------------------------------

    def release(self, block_id: int) -> None:
        """Upstream P8: drop one reference.  On the last one a primary becomes inactive (unless duplicates
        still pin it); a duplicate goes to the free tail, *then* its pin on the primary is dropped.
        """
        checks.block_id("block_id", block_id)
        if self.state.get(block_id) not in (PRIMARY, DUPLICATE) or self.refs[block_id] == 0:
            raise BlockNotHeld(f"block {block_id} holds no reference to release")
        self.refs[block_id] -= 1
        if self.refs[block_id] > 0:
            return
        if self.state[block_id] == PRIMARY:
            self._maybe_deactivate(block_id)
            return
        primary = self.keepalive.pop(block_id)
        del self.refs[block_id]
        self._to_free(block_id)
        self._maybe_deactivate(primary)

    # -- observers --------------------------------------------------------------------------------

    def total_blocks(self) -> int:
        return self.total

    def available_blocks(self) -> int:
        """Upstream P12: free slots plus inactive (cached, evictable) blocks."""
        return len(self.free) + len(self.inactive)

    def inactive_len(self) -> int:
        return len(self.inactive)

    def refcounts(self) -> dict[int, int]:
        """Every active registered block (primary or duplicate) -> references held by callers.

        A primary kept alive only by its duplicates shows 0.
        """
        return {i: self.refs[i] for i in sorted(self.refs)}

    def eviction_order(self) -> list[Plh]:
        """Inactive identities, next victim first.  Changes nothing."""
        return self.inactive.order()

    def free_blocks(self) -> list[int]:
        """The free FIFO, front (next allocated) first."""
        return list(self.free)

