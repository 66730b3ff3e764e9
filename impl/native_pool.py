"""Optimized native vLLM block pool (same interface and observables as ``kvspec.model.native_pool``).

Data structures and invariants (checked by :meth:`NativeBlockPool._check`):

* ``_hash``/``_refs``: copy id -> hash (``None`` = private) and reference count, for every
  resident copy.  ``len(_hash) <= capacity``.
* ``_by_hash``: hash -> deque of its resident copy ids in cache order; the head is the primary.
  Every cached copy appears in exactly one deque; no deque is empty.
* ``_inactive``: an insertion-ordered dict used as an intrusive LRU list (oldest first) holding
  exactly the cached copies with zero references.

Complexity: ``longest_prefix`` O(k) for k hashes; ``acquire`` O(k + fresh + evictions · d) where
d is the number of copies of an evicted hash (1 except for duplicates); ``cache``/``release`` O(1);
``resident`` O(n log n) (observer only).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from kvspec import checks
from kvspec.errors import BlockNotHeld, BlockStateError, PoolExhausted

__all__ = ["NativeBlockPool"]


def _hash_list(name: str, value: Any) -> tuple[int, ...]:
    return checks.sequence(name, value, checks.u64)


class NativeBlockPool:
    """vLLM's native block pool with O(1) LRU maintenance."""

    def __init__(self, capacity: int) -> None:
        checks.capacity("capacity", capacity)
        self.capacity = capacity
        self._hash: dict[int, int | None] = {}
        self._refs: dict[int, int] = {}
        self._by_hash: dict[int, deque[int]] = {}
        self._inactive: OrderedDict[int, None] = OrderedDict()
        self._next_id = 0
        self._removed: list[int] = []

    def longest_prefix(self, hashes: list[int]) -> int:
        hashes = _hash_list("hashes", hashes)
        count = 0
        by_hash = self._by_hash
        for h in hashes:
            if h not in by_hash:
                break
            count += 1
        return count

    def acquire(self, prefix: list[int], fresh: int) -> list[int]:
        prefix = _hash_list("prefix", prefix)
        checks.count("fresh", fresh)
        hits = []
        for h in prefix:
            copies = self._by_hash.get(h)
            if copies is None:
                raise BlockNotHeld(f"prefix hash {h} is not resident")
            hits.append(copies[0])
        free = self.capacity - len(self._hash)
        evictions = fresh - free if fresh > free else 0
        if evictions:
            pinned = len({c for c in hits if c in self._inactive})
            if evictions > len(self._inactive) - pinned:
                raise PoolExhausted(
                    f"need {fresh} fresh copies: {free} free, {len(self._inactive) - pinned} evictable"
                )
        for copy_id in hits:
            self._inactive.pop(copy_id, 0)
            self._refs[copy_id] += 1
        for _ in range(evictions):
            self._evict_oldest()
        start = self._next_id
        self._next_id += fresh
        for copy_id in range(start, start + fresh):
            self._hash[copy_id] = None
            self._refs[copy_id] = 1
        hits.extend(range(start, start + fresh))
        return hits

    def cache(self, copy_id: int, hash_: int) -> bool:
        checks.block_id("copy_id", copy_id)
        checks.u64("hash", hash_)
        self._held(copy_id)
        if self._hash[copy_id] is not None:
            raise BlockStateError(f"copy {copy_id} is already cached as {self._hash[copy_id]}")
        self._hash[copy_id] = hash_
        copies = self._by_hash.get(hash_)
        if copies is None:
            self._by_hash[hash_] = deque((copy_id,))
            return True
        copies.append(copy_id)
        return False

    def release(self, copy_id: int) -> None:
        self._held(copy_id)
        if self._hash[copy_id] is None:
            del self._hash[copy_id]
            del self._refs[copy_id]
            return
        refs = self._refs[copy_id] - 1
        self._refs[copy_id] = refs
        if refs == 0:
            self._inactive[copy_id] = None

    def resident(self) -> list[int]:
        return sorted(self._by_hash)

    def inactive_order(self) -> list[tuple[int, int]]:
        return [(c, self._hash[c]) for c in self._inactive]  # type: ignore[misc]

    def copies(self) -> list[tuple[int, int | None, int]]:
        return [(c, self._hash[c], self._refs[c]) for c in sorted(self._hash)]

    def num_free(self) -> int:
        return self.capacity - len(self._hash)

    def num_active(self) -> int:
        return len(self._hash) - len(self._inactive)

    def drain_removed(self) -> list[int]:
        removed, self._removed = self._removed, []
        return removed

    def _held(self, copy_id: Any) -> None:
        checks.block_id("copy_id", copy_id)
        refs = self._refs.get(copy_id)
        if refs is None or refs == 0:
            raise BlockNotHeld(f"copy {copy_id} is not held by any request")

    def _evict_oldest(self) -> None:
        copy_id, _ = self._inactive.popitem(last=False)
        hash_ = self._hash.pop(copy_id)
        del self._refs[copy_id]
        copies = self._by_hash[hash_]  # type: ignore[index]
        if copies[0] == copy_id:
            copies.popleft()
        else:
            copies.remove(copy_id)
        if not copies:
            del self._by_hash[hash_]  # type: ignore[arg-type]
            self._removed.append(hash_)  # type: ignore[arg-type]

    def _check(self) -> None:
        assert len(self._hash) <= self.capacity
        assert self._hash.keys() == self._refs.keys()
        seen: set[int] = set()
        for h, copies in self._by_hash.items():
            assert copies, "empty copy deque"
            for c in copies:
                assert self._hash.get(c) == h and c not in seen
                seen.add(c)
        cached = {c for c, h in self._hash.items() if h is not None}
        assert seen == cached
        assert set(self._inactive) == {c for c in cached if self._refs[c] == 0}
        assert all(self._refs[c] >= 1 for c, h in self._hash.items() if h is None)
        assert all(c < self._next_id for c in self._hash)
