"""Reference model of vLLM's *native* GPU block pool, as Dynamo 1.6.1's mocker simulates it.

The ``ai-dynamo-runtime`` 1.6.1 wheel does not run its mocker on kvbm-logical (``BlockPool`` /
``KvManager`` in this package).  Its replay engine is ``aisimulate-core`` 0.13, whose vLLM and
TRT-LLM backends keep G1 in ``VllmBlockPool`` (``engine/cache/vllm_block_pool.rs``, managed by
``engine/kv_manager/vllm_backend.rs``).  That pool is a different policy family, modelled here.

Rules (each stated once; ``docs/mocker.md`` derives them from upstream source and replays):

* **Copies, not blocks.**  The pool holds at most ``capacity`` physical *copies*.  A copy is
  *private* (no identity: a partial block, or a full block not yet computed) or *cached* under a
  sequence hash.  Several cached copies may share one hash — vLLM caches a computed block even
  when the same hash is already resident (e.g. the last block of a repeated prompt, which the
  admission rule never reuses).  Lookups see only a hash's *primary* copy: the oldest resident
  one, in the order the copies were cached.
* **References.**  A cached copy has a reference count.  ``acquire`` gives the caller one
  reference on the primary copy of each prefix hash and one new private copy per fresh block.
  ``release`` drops one reference; a private copy is freed at once, a cached copy whose count
  reaches zero becomes *inactive*: it stays resident and findable, and joins the LRU list.
* **LRU eviction.**  Inactive copies are evicted oldest-released first, and only when a fresh
  copy needs room: free capacity is used before anything is evicted.  Re-acquiring an inactive
  copy takes it out of the list; releasing it again puts it at the newest end.  A hash stops being
  resident (and is reported by :meth:`drain_removed`) only when its last copy is evicted.
* **Atomic acquire.**  ``acquire(prefix, fresh)`` either succeeds completely or raises
  :class:`PoolExhausted` with nothing changed.  Inactive copies pinned by ``prefix`` are not
  evictable for that same call.

Copy ids are handed out as ``0, 1, 2, ...`` so two implementations fed the same calls agree on
them.  Bad input raises a :mod:`kvspec.errors` error before anything changes.
"""

from __future__ import annotations

from typing import Any

import attrs

from kvspec import checks
from kvspec.errors import BlockNotHeld, BlockStateError, PoolExhausted

__all__ = ["NativeBlockPool"]


def _hash_list(name: str, value: Any) -> tuple[int, ...]:
    return checks.sequence(name, value, checks.u64)


@attrs.define
class _Copy:
    """One physical copy: ``hash`` is ``None`` while private; ``refs`` counts request references."""

    hash: int | None
    refs: int


class NativeBlockPool:
    """vLLM's native block pool: copies, reference counts, an LRU list of inactive copies."""

    def __init__(self, capacity: int) -> None:
        checks.capacity("capacity", capacity)
        self.capacity = capacity
        self._copies: dict[int, _Copy] = {}
        #: hash -> its resident copies in the order they were cached; element 0 is the primary
        self._by_hash: dict[int, list[int]] = {}
        #: inactive copies, oldest release first (the eviction order); a dict keeps insertion order
        self._inactive: dict[int, None] = {}
        self._next_id = 0
        self._removed: list[int] = []

    # --- lookups -------------------------------------------------------------------------------

    def longest_prefix(self, hashes: list[int]) -> int:
        """How many leading ``hashes`` are resident (active or inactive), stopping at the first miss."""
        hashes = _hash_list("hashes", hashes)
        count = 0
        for h in hashes:
            if h not in self._by_hash:
                break
            count += 1
        return count

    # --- mutations -----------------------------------------------------------------------------

    def acquire(self, prefix: list[int], fresh: int) -> list[int]:
        """Reference the primary copy of each ``prefix`` hash and allocate ``fresh`` private copies.

        Returns the copy ids, prefix first then fresh.  Evicts the oldest inactive copies only
        for the fresh copies that free capacity cannot hold.  Raises :class:`PoolExhausted`
        (nothing changed) when even evicting every inactive copy not in ``prefix`` is not enough.
        """
        prefix = _hash_list("prefix", prefix)
        checks.count("fresh", fresh)
        for h in prefix:
            if h not in self._by_hash:
                raise BlockNotHeld(f"prefix hash {h} is not resident")
        hits = [self._by_hash[h][0] for h in prefix]
        free = self.capacity - len(self._copies)
        evictions = max(0, fresh - free)
        pinned_inactive = {c for c in hits if c in self._inactive}
        if evictions > len(self._inactive) - len(pinned_inactive):
            raise PoolExhausted(
                f"need {fresh} fresh copies: {free} free, "
                f"{len(self._inactive) - len(pinned_inactive)} evictable"
            )
        for copy_id in hits:
            self._inactive.pop(copy_id, None)
            self._copies[copy_id].refs += 1
        for _ in range(evictions):
            self._evict_oldest()
        fresh_ids = []
        for _ in range(fresh):
            copy_id = self._next_id
            self._next_id += 1
            self._copies[copy_id] = _Copy(hash=None, refs=1)
            fresh_ids.append(copy_id)
        return hits + fresh_ids

    def cache(self, copy_id: int, hash_: int) -> bool:
        """A private copy has been computed as block ``hash_``: make it findable.

        Returns ``True`` when it is the hash's first resident copy (the router would see a
        Stored event), ``False`` when it joins existing copies as a duplicate.
        """
        checks.block_id("copy_id", copy_id)
        checks.u64("hash", hash_)
        copy = self._held(copy_id)
        if copy.hash is not None:
            raise BlockStateError(f"copy {copy_id} is already cached as {copy.hash}")
        copy.hash = hash_
        first = hash_ not in self._by_hash
        self._by_hash.setdefault(hash_, []).append(copy_id)
        return first

    def release(self, copy_id: int) -> None:
        """Drop one reference: a private copy is freed, a cached one may become inactive."""
        copy = self._held(copy_id)
        if copy.hash is None:
            del self._copies[copy_id]
            return
        copy.refs -= 1
        if copy.refs == 0:
            self._inactive[copy_id] = None

    # --- observers -----------------------------------------------------------------------------

    def resident(self) -> list[int]:
        """Every hash with at least one resident copy, sorted."""
        return sorted(self._by_hash)

    def inactive_order(self) -> list[tuple[int, int]]:
        """``(copy id, hash)`` of every inactive copy, next to be evicted first."""
        return [(c, self._copies[c].hash) for c in self._inactive]  # type: ignore[misc]

    def copies(self) -> list[tuple[int, int | None, int]]:
        """``(copy id, hash or None, references)`` of every resident copy, by id."""
        return [(c, self._copies[c].hash, self._copies[c].refs) for c in sorted(self._copies)]

    def num_free(self) -> int:
        return self.capacity - len(self._copies)

    def num_active(self) -> int:
        """Copies held by a request (private or cached with references)."""
        return len(self._copies) - len(self._inactive)

    def drain_removed(self) -> list[int]:
        """Hashes whose last copy was evicted since the previous call, in eviction order."""
        removed, self._removed = self._removed, []
        return removed

    # --- helpers -------------------------------------------------------------------------------

    def _held(self, copy_id: Any) -> _Copy:
        checks.block_id("copy_id", copy_id)
        copy = self._copies.get(copy_id)
        if copy is None or (copy.hash is not None and copy.refs == 0):
            raise BlockNotHeld(f"copy {copy_id} is not held by any request")
        return copy

    def _evict_oldest(self) -> None:
        copy_id = next(iter(self._inactive))
        del self._inactive[copy_id]
        hash_ = self._copies.pop(copy_id).hash
        assert hash_ is not None
        self._by_hash[hash_].remove(copy_id)
        if not self._by_hash[hash_]:
            del self._by_hash[hash_]
            self._removed.append(hash_)
