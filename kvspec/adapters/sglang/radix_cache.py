"""``SglangRadixCache`` over SGLang 0.5.23's real ``RadixCache`` (LRU), with a deterministic clock.

``RadixCache.create_simulated`` (no model, a counting allocator, KV events on) driven as SGLang's
scheduler drives it: ``insert``, ``match_prefix``, ``inc_lock_ref`` / ``dec_lock_ref`` on the
matched node, ``evict``.  The module's ``time.monotonic`` is replaced by a counter (ties between
nodes would otherwise fall back to memory addresses).  Events are translated to kvspec's hashes:
each published page hash is mapped to the token path it covers (learnt from the ``BlockStored``
events themselves: parent path + page tokens).
"""

from __future__ import annotations

import itertools
import time
import types
from array import array
from typing import Any

from kvspec.errors import InvalidArgument
from kvspec.events import Cleared, KvCacheEvent, Removed, Stored, StoredBlock
from kvspec.hashing import block_hashes, sequence_hashes

__all__ = ["SglangRadixCache"]

_CLOCK = itertools.count(1)


def _patch_clock(module: Any) -> None:
    if not isinstance(getattr(module, "time", None), types.SimpleNamespace):
        module.time = types.SimpleNamespace(monotonic=lambda: float(next(_CLOCK)), perf_counter=time.perf_counter,
                                            time=time.time)


def _tokens(tokens: Any) -> list[int]:
    if not isinstance(tokens, (list, tuple)) or not all(
            isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 2**31 for t in tokens):
        raise InvalidArgument(f"tokens must be a list of non-negative int31 token ids, got {tokens!r}")
    return list(tokens)


class SglangRadixCache:
    def __init__(self, page_size: int = 1) -> None:
        if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
            raise InvalidArgument(f"page_size must be a positive int, got {page_size!r}")
        import sglang.srt.mem_cache.radix_cache as rc
        from sglang.srt.mem_cache import base_prefix_cache as bp

        from kvspec.adapters.sglang.record import CountingAllocator

        _patch_clock(rc)
        self._rc, self._bp = rc, bp
        self.page_size = page_size
        self.cache = rc.RadixCache.create_simulated(mock_allocator=CountingAllocator(), page_size=page_size,
                                                    enable_kv_cache_events=True)
        self._paths: dict[int, tuple[int, ...]] = {}
        self._locks: dict[int, Any] = {}
        self._next_lock = 0
        self._event_id = 0

    def _key(self, tokens: list[int]) -> Any:
        return self._rc.RadixKey(array("q", tokens))

    def match(self, tokens: list[int]) -> int:
        tokens = _tokens(tokens)
        return int(self.cache.match_prefix(self._bp.MatchPrefixParams(key=self._key(tokens))).device_prefix_len)

    def insert(self, tokens: list[int]) -> int:
        import torch

        tokens = _tokens(tokens)
        result = self.cache.insert(self._bp.InsertParams(key=self._key(tokens), value=torch.arange(len(tokens))))
        return int(result.prefix_len)

    def lock(self, tokens: list[int]) -> int:
        tokens = _tokens(tokens)
        node = self.cache.match_prefix(self._bp.MatchPrefixParams(key=self._key(tokens))).last_device_node
        self.cache.inc_lock_ref(node)
        lock_id = self._next_lock
        self._next_lock += 1
        self._locks[lock_id] = node
        return lock_id

    def unlock(self, lock_id: int) -> None:
        node = self._locks.pop(lock_id, None) if isinstance(lock_id, int) else None
        if node is None:
            raise InvalidArgument(f"no lock {lock_id!r}")
        self.cache.dec_lock_ref(node)

    def evict(self, num_tokens: int) -> int:
        if not isinstance(num_tokens, int) or isinstance(num_tokens, bool) or num_tokens < 0:
            raise InvalidArgument(f"num_tokens must be a non-negative int, got {num_tokens!r}")
        return int(self.cache.evict(self._bp.EvictParams(num_tokens=num_tokens)).num_tokens_evicted)

    # --- observers ---------------------------------------------------------------------------------

    def nodes(self) -> list[tuple[tuple[int, ...], int]]:
        out = []
        stack = [(child, ()) for child in self.cache.root_node.children.values()]
        while stack:
            node, prefix = stack.pop()
            path = prefix + tuple(node.key.token_ids[: len(node.key)])
            out.append((path, int(node.lock_ref)))
            stack.extend((c, path) for c in node.children.values())
        return sorted(out)

    def _ours(self, path: tuple[int, ...]) -> int:
        return sequence_hashes(block_hashes(list(path), self.page_size))[-1]

    def drain_events(self) -> list[KvCacheEvent]:
        out = []
        for event in self.cache.kv_events.take():
            kind = type(event).__name__
            if kind == "BlockStored":
                base = () if event.parent_block_hash is None else self._paths[event.parent_block_hash]
                parent = None if event.parent_block_hash is None else self._ours(base)
                blocks, path = [], base
                tokens = list(event.token_ids)
                for i, h in enumerate(event.block_hashes):
                    page = tuple(tokens[i * self.page_size:(i + 1) * self.page_size])
                    path = path + page
                    self._paths[h] = path
                    (local,) = block_hashes(list(page), self.page_size)
                    blocks.append(StoredBlock(self._ours(path), local))
                data: Any = Stored(parent, blocks)
            elif kind == "BlockRemoved":
                data = Removed([self._ours(self._paths[h]) for h in event.block_hashes])
            else:
                data = Cleared()
            out.append(KvCacheEvent(self._event_id, data))
            self._event_id += 1
        return out

    def held_hashes(self) -> set[int]:
        return {h for path, _ in self.nodes() for h in sequence_hashes(block_hashes(list(path), self.page_size))}
