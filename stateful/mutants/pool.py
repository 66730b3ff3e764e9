"""Planted bugs in :class:`kvspec.impl.pool.BlockPool`, each breaking one rule of the spec.

Every mutant must be caught by one of the ``pool[...]`` machines named in ``caught_by`` under the ``ci``
profile (``tests/quality/test_mutants.py``).
"""

from __future__ import annotations

from kvspec.stateful.mutants import Mutant


def _pool():
    from kvspec.impl.pool import BlockPool

    return BlockPool


def lineage_fifo_releaf():
    """Tick policy, but a parent that becomes a leaf again gets a fresh tick (goes to the tail)."""
    from kvspec.impl.eviction import _TICK, _WIDTH, LineageIndex

    class TailReleaf(LineageIndex):
        def _leaf_added(self, node, newest):
            if self._tick_policy and not newest:
                self._rec[_WIDTH * node + _TICK] = self._next_tick << 1  # a fresh tick, not queued
                self._next_tick += 1
            super()._leaf_added(node, True)

    class Pool(_pool()):
        def _make_backend(self, eviction):
            return TailReleaf("tick") if eviction == "lineage" else super()._make_backend(eviction)

    return Pool


def ghost_linked_upward():
    """A placeholder ghost for an *active* parent is linked to that parent's own parent, so an
    active block in the middle of a chain protects its inactive ancestors (upstream does not)."""
    from kvspec.impl.eviction import _CHILDREN, _PARENT, _WIDTH, LineageIndex

    class LinkedGhosts(LineageIndex):
        owner_of = staticmethod(lambda key: None)

        def _new_placeholder(self, position, current):
            ghost = self._new_node(position, current)
            plh = self.owner_of((position, current))
            if plh is not None and plh.parent_key is not None:
                parent = self._node_at(*plh.parent_key)
                if parent is None:
                    parent = self._new_placeholder(*plh.parent_key)
                children = _WIDTH * parent + _CHILDREN
                if not self._rec[children] and self._plh[parent] is not None:
                    self._leaf_gone(parent)
                self._rec[children] += 1
                self._rec[_WIDTH * ghost + _PARENT] = parent
            return ghost

    class Pool(_pool()):
        def _make_backend(self, eviction):
            if eviction not in ("lineage", "lineage_fifo"):
                return super()._make_backend(eviction)
            backend = LinkedGhosts("tick" if eviction == "lineage" else "fifo")
            backend.owner_of = self._owner_of_key
            return backend

    return Pool


def evict_before_free():
    """Allocation takes inactive victims first and only then free slots."""

    class Pool(_pool()):
        def allocate_with_evictions(self, n):
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                return super().allocate_with_evictions(n)
            if len(self._free) + len(self._backend) < n:
                return None
            from kvspec.impl.pool import MUTABLE

            ids, evicted = [], []
            while len(ids) < n and len(self._backend):
                plh, block_id = self._backend.evict()
                self._unfile(plh, block_id)
                self._state[block_id] = MUTABLE
                self._plh[block_id] = None
                ids.append(block_id)
                evicted.append(plh)
            while len(ids) < n:
                block_id = self._free.popleft()
                self._state[block_id] = MUTABLE
                ids.append(block_id)
            return ids, evicted

    return Pool


def multilru_no_tiers():
    """MultiLRU files every block in tier 0: frequency is ignored, it degenerates to LRU."""
    from kvspec.impl.eviction import MultiLruIndex

    class OneTier(MultiLruIndex):
        def insert(self, plh, block_id):
            self._tiers[0][plh] = block_id
            self._tier[plh] = 0

    class Pool(_pool()):
        def _make_backend(self, eviction):
            return OneTier(self._frequency, self._thresholds) if eviction == "multi_lru" else super()._make_backend(eviction)

    return Pool


def reject_returns_own_id():
    """Under ``duplication="reject"`` a live identity is registered as a duplicate anyway, so the
    caller keeps (and is handed back) its own block id instead of the primary's."""

    class Pool(_pool()):
        def register(self, block_id, plh):
            reject = self._reject
            self._reject = False
            try:
                return super().register(block_id, plh)
            finally:
                self._reject = reject

    return Pool


def match_skips_miss():
    """``match_blocks`` keeps going past a miss (upstream's *scattered* match, not ``match_blocks``)."""

    class Pool(_pool()):
        def match_blocks(self, plhs):
            plhs = self._plh_list(plhs)
            out = []
            for plh in plhs:
                block_id = self._acquire(plh)
                if block_id is not None:
                    self._refs[block_id] += 1
                    out.append(block_id)
                    if self._frequency is not None:
                        self._frequency.touch(plh)
            return out

    return Pool


def release_to_front():
    """A dropped mutable block goes to the *front* of the free FIFO (it must go to the back)."""

    class Pool(_pool()):
        def release_mutable(self, block_id):
            super().release_mutable(block_id)
            self._free.appendleft(self._free.pop())

    return Pool


def touch_live_register():
    """Registering an identity that is already live touches the frequency tracker again."""

    class Pool(_pool()):
        def register(self, block_id, plh):
            key = getattr(plh, "key", None)  # bad input: left to register() to refuse
            live = key is not None and self._owner_of_key(key) == plh
            result = super().register(block_id, plh)
            if live and self._frequency is not None:
                self._frequency.touch(plh)
            return result

    return Pool


def impostor_accepted():
    """No collision check at registration: an impostor becomes a primary (the lineage graph then
    refuses it at release, where upstream panics)."""

    class Pool(_pool()):
        def register(self, block_id, plh):
            key = getattr(plh, "key", None)
            owner = self._owner_of_key(key) if key is not None else None
            if owner is None or owner == plh:
                return super().register(block_id, plh)
            owner_id = self._slot_at(*key)
            self._unfile(owner, owner_id)  # hide the live owner from the check (and from the index)
            try:
                return super().register(block_id, plh)
            except Exception:
                self._file(owner, owner_id)
                raise

    return Pool


MUTANTS = [
    Mutant("lineage-fifo-releaf", "Tick policy re-leafs a parent at the tail like Fifo",
           {"BlockPool": lineage_fifo_releaf}, ("pool[lineage,",)),
    Mutant("ghost-linked-upward", "placeholder ghosts are linked to their parent, protecting ancestors",
           {"BlockPool": ghost_linked_upward}, ("pool[lineage",)),
    Mutant("evict-before-free", "allocation evicts inactive blocks before using free slots",
           {"BlockPool": evict_before_free}, ("pool[",)),
    Mutant("multilru-no-tiers", "MultiLRU ignores frequency and files everything in tier 0",
           {"BlockPool": multilru_no_tiers}, ("pool[multi_lru,",)),
    Mutant("reject-returns-own-id", "Reject keeps the caller's block as a duplicate and returns its id",
           {"BlockPool": reject_returns_own_id}, ("pool[lru,reject]", "pool[lineage,reject]", "pool[lineage_fifo,reject]", "pool[multi_lru,reject]")),
    Mutant("match-skips-miss", "match_blocks does not stop at the first miss",
           {"BlockPool": match_skips_miss}, ("pool[",)),
    Mutant("release-to-front", "a dropped mutable block goes to the front of the free FIFO",
           {"BlockPool": release_to_front}, ("pool[",)),
    Mutant("touch-live-register", "re-registering a live identity touches the frequency tracker",
           {"BlockPool": touch_live_register}, ("pool[multi_lru,",)),
    Mutant("impostor-accepted", "no DuplicateLineage check: a same-key impostor is registered",
           {"BlockPool": impostor_accepted}, ("pool[",)),
]
