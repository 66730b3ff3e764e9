"""``NativeBlockPool`` over vLLM's real ``BlockPool`` (copies, references, one free queue).

kvspec's :class:`~kvspec.model.NativeBlockPool` is the pool of a vLLM worker seen through copy
operations.  Each operation maps onto the ``BlockPool`` calls vLLM's single-type manager makes:

* ``acquire(prefix, fresh)`` — ``get_cached_block`` of each prefix hash (the primary copy),
  ``touch`` of those blocks, ``get_new_blocks(fresh)`` (evicting from the free queue's front);
  the capacity check is the one ``get_num_blocks_to_allocate`` makes (hit blocks sitting in the
  free queue count as needed);
* ``cache(copy, hash)`` — ``cache_full_blocks`` of that one block for a real 1-token ``Request``
  whose block hash is set to ``hash`` (``hash_block_size = block_size = 1``);
* ``release(copy)`` — ``free_blocks([block])``.

The pool holds ``capacity + 1`` blocks (block 0 is vLLM's null block).  Copies are named as the
model names them, ``0, 1, 2, ...`` in allocation order (a physical block that is reused becomes a
new copy).  ``drain_removed`` reports a hash when vLLM's ``BlockRemoved`` of its last copy is seen.
"""

from __future__ import annotations

from typing import Any

from kvspec import checks
from kvspec.adapters.vllm import runtime
from kvspec.errors import BlockNotHeld, BlockStateError, InvalidArgument, PoolExhausted

__all__ = ["NativeBlockPool"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _hash_list(value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(_is_int(h) and h >= 0 for h in value):
        raise InvalidArgument(f"expected a list of non-negative int hashes, got {value!r}")
    return list(value)


class NativeBlockPool:
    """vLLM's ``BlockPool`` behind the model's copy interface."""

    def __init__(self, capacity: int) -> None:
        if not _is_int(capacity) or capacity <= 0:
            raise InvalidArgument(f"capacity must be a positive int, got {capacity!r}")
        self.capacity = capacity
        self.pool = runtime._m("vllm.v1.core.block_pool").BlockPool(
            capacity + 1, enable_caching=True, hash_block_size=1, enable_kv_cache_events=True)
        self._utils = runtime._m("vllm.v1.core.kv_cache_utils")
        self._copy_of: dict[int, int] = {}  # physical block id -> copy id
        self._block: dict[int, Any] = {}  # copy id -> block
        self._next = 0
        self._removed: list[int] = []

    def _key(self, h: int) -> Any:
        return self._utils.BlockHash(h.to_bytes(32, "big"))

    def _primary(self, h: int) -> Any:
        found = self.pool.get_cached_block(self._key(h), [0])
        return None if found is None else found[0]

    def longest_prefix(self, hashes: list[int]) -> int:
        hashes = _hash_list(hashes)
        count = 0
        for h in hashes:
            if self._primary(h) is None:
                break
            count += 1
        return count

    def acquire(self, prefix: list[int], fresh: int) -> list[int]:
        prefix = _hash_list(prefix)
        checks.count("fresh", fresh)
        hits = []
        for h in prefix:
            block = self._primary(h)
            if block is None:
                raise BlockNotHeld(f"prefix hash {h} is not resident")
            hits.append(block)
        pinned = {b.block_id for b in hits if b.ref_cnt == 0}
        available = self.pool.get_num_free_blocks() - len(pinned)
        if fresh > available:
            raise PoolExhausted(f"need {fresh} fresh copies, {available} blocks free or evictable")
        self.pool.touch(hits)
        new = self.pool.get_new_blocks(fresh)
        self._collect_removed()
        ids = [self._copy_of[b.block_id] for b in hits]
        for block in new:
            self._copy_of[block.block_id] = self._next
            self._block[self._next] = block
            ids.append(self._next)
            self._next += 1
        return ids

    def cache(self, copy_id: int, hash_: int) -> bool:
        checks.block_id("copy_id", copy_id)  # the model's argument rules, in the model's order
        checks.u64("hash", hash_)
        block = self._held(copy_id)
        if block.block_hash is not None:
            raise BlockStateError(f"copy {copy_id} is already cached")
        first = self._primary(hash_) is None
        req = runtime.request(f"cache-{copy_id}", [0], 1)
        req.block_hashes = [self._key(hash_)]
        self.pool.cache_full_blocks(req, [block], num_cached_blocks=0, num_full_blocks=1, block_size=1,
                                    kv_cache_group_id=0)
        return first

    def release(self, copy_id: int) -> None:
        self.pool.free_blocks([self._held(copy_id)])

    # --- observers -------------------------------------------------------------------------------

    def _resident(self) -> dict[int, Any]:
        out = {}
        for copy_id, block in self._block.items():
            if self._copy_of.get(block.block_id) == copy_id and (block.ref_cnt > 0 or block.block_hash is not None):
                out[copy_id] = block
        return out

    def _hash(self, block: Any) -> int | None:
        return None if block.block_hash is None else runtime.external(block.block_hash)

    def resident(self) -> list[int]:
        return sorted({self._hash(b) for b in self._resident().values() if b.block_hash is not None})

    def copies(self) -> list[tuple[int, int | None, int]]:
        return [(c, self._hash(b), b.ref_cnt) for c, b in sorted(self._resident().items())]

    def inactive_order(self) -> list[tuple[int, int]]:
        return [(self._copy_of[b.block_id], self._hash(b))
                for b in self.pool.free_block_queue.get_all_free_blocks() if b.block_hash is not None]

    def num_free(self) -> int:
        return self.capacity - len(self._resident())

    def num_active(self) -> int:
        return len(self._resident()) - len(self.inactive_order())

    def drain_removed(self) -> list[int]:
        self._collect_removed()
        removed, self._removed = self._removed, []
        return removed

    def _collect_removed(self) -> None:
        """Per-copy ``BlockRemoved`` events -> hashes whose last copy is gone, in eviction order."""
        gone = [runtime.external(h) for e in self.pool.take_events() if type(e).__name__ == "BlockRemoved"
                for h in e.block_hashes]
        for i, h in enumerate(gone):
            if h not in gone[i + 1:] and self._primary(h) is None:
                self._removed.append(h)

    def _held(self, copy_id: Any) -> Any:
        if not _is_int(copy_id):
            raise InvalidArgument(f"copy id must be an int, got {copy_id!r}")
        block = self._resident().get(copy_id)
        if block is None or (block.block_hash is not None and block.ref_cnt == 0):
            raise BlockNotHeld(f"copy {copy_id} is not held by any request")
        return block
