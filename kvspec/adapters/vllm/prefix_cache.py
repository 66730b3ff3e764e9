"""``VllmPrefixCache`` over vLLM's real ``KVCacheManager``, driven exactly as its scheduler drives it.

Each method is the scheduler's own sequence of calls on the manager:

* ``add_request`` — a real ``Request`` (the engine core's block hasher computes its block hashes);
* ``schedule`` — a waiting (or preempted) request: ``get_computed_blocks(request)`` then
  ``allocate_slots(request, num_new_tokens, num_new_computed_tokens, new_computed_blocks)``; a
  running request: ``allocate_slots(request, num_new_tokens)``.  On success the step's tokens are
  computed (``request.num_computed_tokens``), as after the forward pass;
* ``append_token`` — ``request.append_output_token_ids(token)`` (updates its block hashes);
* ``free`` — ``free(request)`` (finished or aborted); ``preempt`` — ``free(request)`` and
  ``num_computed_tokens = 0``, as ``Scheduler._preempt_request`` does.

Observers read vLLM's own state: ``take_events()`` (translated by :mod:`.runtime`), the free
queue, the hash-to-block map, the block tables and reference counts.  ``events`` is accepted for
the model's signature and ignored: vLLM publishes one event per physical copy whatever a router
would need (the ``per-hash`` machine shows the difference).
"""

from __future__ import annotations

from typing import Any

from kvspec import checks
from kvspec.adapters.vllm import runtime
from kvspec.errors import InvalidArgument
from kvspec.events import KvCacheEvent

__all__ = ["VllmPrefixCache"]

EVENT_MODES = checks.VLLM_EVENT_MODES


_is_int = checks.is_int


_tokens = checks.vllm_tokens


class VllmPrefixCache:
    """vLLM's ``KVCacheManager`` behind kvspec's ``VllmPrefixCache`` interface."""

    def __init__(self, num_blocks: int, block_size: int, events: str = "per-copy") -> None:
        checks.vllm_cache_options(num_blocks, block_size, events)
        self.block_size = block_size
        self.manager = runtime.manager(num_blocks, block_size)
        self.pool = self.manager.block_pool
        self.names = runtime.HashNames(block_size)
        self._requests: dict[str, Any] = {}
        self._waiting: set[str] = set()
        self._event_id = 0
        self._status = runtime._m("vllm.v1.request").RequestStatus

    def _request(self, request_id: Any) -> Any:
        req = self._requests.get(request_id) if isinstance(request_id, str) else None
        if req is None:
            raise InvalidArgument(f"no request {request_id!r}")
        return req

    def add_request(self, request_id: str, prompt: list[int], report_full: bool = False) -> None:
        prompt = checks.vllm_request(request_id, prompt, report_full)
        if request_id in self._requests:
            raise InvalidArgument(f"request {request_id!r} already exists")
        req = runtime.request(request_id, prompt, self.block_size, report_full=report_full)
        self.names.learn(req)
        self._requests[request_id] = req
        self._waiting.add(request_id)

    def schedule(self, request_id: str, num_new_tokens: int | None = None) -> tuple[int, list[int]] | None:
        req = self._request(request_id)
        if num_new_tokens is not None and (not _is_int(num_new_tokens) or num_new_tokens < 1):
            raise InvalidArgument(f"num_new_tokens must be a positive int or None, got {num_new_tokens!r}")
        waiting = request_id in self._waiting
        computed_blocks, hit_tokens = None, 0
        if waiting:
            computed_blocks, hit_tokens, _ = self.manager.get_computed_blocks(req)
        computed = req.num_computed_tokens + hit_tokens
        left = req.num_tokens - computed
        if left < 1:
            raise InvalidArgument(f"request {request_id!r} has no token to compute (append one first)")
        new = left if num_new_tokens is None else min(num_new_tokens, left)
        if waiting:
            out = self.manager.allocate_slots(req, new, hit_tokens, computed_blocks)
        else:
            out = self.manager.allocate_slots(req, new)
        if out is None:
            return None
        self._waiting.discard(request_id)
        req.status = self._status.RUNNING
        req.num_computed_tokens = computed + new
        return (hit_tokens, list(out.get_block_ids()[0]))

    def append_token(self, request_id: str, token: int) -> None:
        req = self._request(request_id)
        _tokens([token], "token")
        if req.num_computed_tokens < req.num_tokens:
            raise InvalidArgument(f"request {request_id!r} is still prefilling")
        req.append_output_token_ids(token)
        self.names.learn(req)

    def free(self, request_id: str) -> None:
        req = self._request(request_id)
        self.manager.free(req)
        del self._requests[request_id]
        self._waiting.discard(request_id)

    def preempt(self, request_id: str) -> None:
        req = self._request(request_id)
        self.manager.free(req)
        req.status = self._status.PREEMPTED
        req.num_computed_tokens = 0
        self._waiting.add(request_id)

    # --- observers: vLLM's own state ----------------------------------------------------------------

    def drain_events(self) -> list[KvCacheEvent]:
        out = []
        for event in self.manager.take_events():
            out.append(KvCacheEvent(self._event_id, runtime.kvspec_event(event, self.names, self.block_size)))
            self._event_id += 1
        return out

    def _name(self, block: Any) -> int | None:
        return None if block.block_hash is None else self.names(block.block_hash)

    def free_queue(self) -> list[tuple[int, int | None]]:
        return [(b.block_id, self._name(b)) for b in self.pool.free_block_queue.get_all_free_blocks()]

    def cached_copies(self) -> list[tuple[int, list[int]]]:
        # BlockHashToBlockMap keeps one block or a dict of copies in insertion order (no public view)
        out = []
        for key, blocks in self.pool.cached_block_hash_to_block._cache.items():
            ids = [blocks.block_id] if hasattr(blocks, "block_id") else list(blocks)
            out.append((self.names(key), ids))
        return sorted(out)

    def tables(self) -> list[tuple[str, int, list[int]]]:
        return [(rid, req.num_computed_tokens, list(self.manager.get_block_ids(rid)[0]))
                for rid, req in sorted(self._requests.items())]

    def refcounts(self) -> list[tuple[int, int]]:
        return [(b.block_id, b.ref_cnt) for b in self.pool.blocks if b.ref_cnt and not b.is_null]

    def held_hashes(self) -> set[int]:
        return {h for h, _ in self.cached_copies()}
