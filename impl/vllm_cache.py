"""vLLM's prefix cache (``VllmPrefixCache``): the free queue as a doubly linked list of block ids.

Same observables as the reference model (``kvspec.model.VllmPrefixCache``, where the rules are
stated).  Structures and costs:

* free queue — ``_next`` / ``_prev`` dicts with sentinel ``HEAD`` / ``TAIL``: pop front O(1),
  remove a hit block O(1), prepend / append a run O(k);
* cached copies — ``hash -> dict(block id -> None)`` in insertion order: the primary is the first
  key (O(1)), insert / evict a copy O(1);
* ``_check()`` (O(blocks)): the queue is a well-linked chain holding exactly the blocks with no
  reference, every cached block's hash lists it, reference counts equal the block-table uses.
"""

from __future__ import annotations

from typing import Any

from kvspec import checks
from kvspec.errors import InvalidArgument
from kvspec.events import KvCacheEvent, Removed, Stored, StoredBlock
from kvspec.hashing import block_hashes, sequence_hashes

__all__ = ["VllmPrefixCache"]

EVENT_MODES = checks.VLLM_EVENT_MODES
HEAD, TAIL = -1, -2


_is_int = checks.is_int


_tokens = checks.vllm_tokens


class _Req:
    __slots__ = ("tokens", "report_full", "computed", "blocks", "num_cached", "hashes")

    def __init__(self, tokens: list[int], report_full: bool) -> None:
        self.tokens = tokens
        self.report_full = report_full
        self.computed = 0
        self.blocks: list[int] = []
        self.num_cached = 0
        self.hashes: list[int] = []  # chained hashes of the full blocks, extended as tokens arrive


class VllmPrefixCache:
    def __init__(self, num_blocks: int, block_size: int, events: str = "per-copy") -> None:
        checks.vllm_cache_options(num_blocks, block_size, events)
        self.block_size, self.events, self.num_blocks = block_size, events, num_blocks
        ids = list(range(1, num_blocks))
        chain = [HEAD, *ids, TAIL]
        self._next = {a: b for a, b in zip(chain, chain[1:])}
        self._prev = {b: a for a, b in zip(chain, chain[1:])}
        self._num_free = len(ids)
        self._hash: list[int | None] = [None] * num_blocks
        self._refs = [0] * num_blocks
        self._cached: dict[int, dict[int, None]] = {}
        self._requests: dict[str, _Req] = {}
        self._events: list[KvCacheEvent] = []
        self._event_id = 0

    # --- free queue: O(1) per block ------------------------------------------------------------------

    def _unlink(self, b: int) -> None:
        p, n = self._prev.pop(b), self._next.pop(b)
        self._next[p], self._prev[n] = n, p
        self._num_free -= 1

    def _insert_after(self, anchor: int, b: int) -> None:
        n = self._next[anchor]
        self._next[anchor], self._prev[b], self._next[b], self._prev[n] = b, anchor, n, b
        self._num_free += 1

    # --- requests ----------------------------------------------------------------------------------

    def _request(self, request_id: Any) -> _Req:
        req = self._requests.get(request_id) if isinstance(request_id, str) else None
        if req is None:
            raise InvalidArgument(f"no request {request_id!r}")
        return req

    def _extend_hashes(self, req: _Req) -> None:
        full = len(req.tokens) // self.block_size
        if full > len(req.hashes):
            start = len(req.hashes) * self.block_size
            new = block_hashes(req.tokens[start:full * self.block_size], self.block_size)
            req.hashes += sequence_hashes(new, req.hashes[-1] if req.hashes else None)

    def add_request(self, request_id: str, prompt: list[int], report_full: bool = False) -> None:
        prompt = checks.vllm_request(request_id, prompt, report_full)
        if request_id in self._requests:
            raise InvalidArgument(f"request {request_id!r} already exists")
        req = _Req(prompt, report_full)
        self._extend_hashes(req)
        self._requests[request_id] = req

    def schedule(self, request_id: str, num_new_tokens: int | None = None) -> tuple[int, list[int]] | None:
        req = self._request(request_id)
        if num_new_tokens is not None and (not _is_int(num_new_tokens) or num_new_tokens < 1):
            raise InvalidArgument(f"num_new_tokens must be a positive int or None, got {num_new_tokens!r}")
        bs = self.block_size
        hits: list[int] = []
        if not req.blocks:
            for h in req.hashes[: (len(req.tokens) - 1) // bs]:
                copies = self._cached.get(h)
                if not copies:
                    break
                hits.append(next(iter(copies)))
            if hits and req.report_full and self.events == "per-copy":
                self._stored(None, req.hashes[: len(hits)], req.tokens)
        computed = req.computed + len(hits) * bs
        left = len(req.tokens) - computed
        if left < 1:
            raise InvalidArgument(f"request {request_id!r} has no token to compute (append one first)")
        new = left if num_new_tokens is None else min(num_new_tokens, left)
        need = max(-(-(computed + new) // bs) - len(req.blocks) - len(hits), 0)
        if need + len({b for b in hits if self._refs[b] == 0}) > self._num_free:
            return None
        for b in hits:
            if self._refs[b] == 0:
                self._unlink(b)
            self._refs[b] += 1
        if hits:
            req.blocks += hits
            req.num_cached = len(hits)
        fresh = [self._pop_front() for _ in range(need)]
        req.blocks += fresh
        req.computed = computed + new
        self._cache_full(req)
        return (len(hits) * bs, fresh)

    def _pop_front(self) -> int:
        b = self._next[HEAD]
        self._unlink(b)
        h = self._hash[b]
        if h is not None:
            copies = self._cached[h]
            del copies[b]
            if not copies:
                del self._cached[h]
            self._hash[b] = None
            if self.events == "per-copy" or not copies:
                self._emit(Removed([h]))
        self._refs[b] = 1
        return b

    def _cache_full(self, req: _Req) -> None:
        full = min(req.computed, len(req.tokens)) // self.block_size
        start = req.num_cached
        if full <= start:
            return
        first = []
        for i in range(start, full):
            b, h = req.blocks[i], req.hashes[i]
            copies = self._cached.setdefault(h, {})
            first.append(not copies)
            copies[b] = None
            self._hash[b] = h
        req.num_cached = full
        if self.events == "per-copy":
            self._stored(req.hashes[start - 1] if start else None, req.hashes[start:full],
                         req.tokens[start * self.block_size:])
            return
        i = 0
        while i < len(first):  # per-hash: runs of first copies
            if not first[i]:
                i += 1
                continue
            j = i
            while j < len(first) and first[j]:
                j += 1
            a = start + i
            self._stored(req.hashes[a - 1] if a else None, req.hashes[a:start + j], req.tokens[a * self.block_size:])
            i = j

    def _stored(self, parent: int | None, hashes: list[int], tokens: list[int]) -> None:
        locals_ = block_hashes(tokens[: len(hashes) * self.block_size], self.block_size)
        self._emit(Stored(parent, [StoredBlock(h, t) for h, t in zip(hashes, locals_)]))

    def _emit(self, data: Any) -> None:
        self._events.append(KvCacheEvent(self._event_id, data))
        self._event_id += 1

    def append_token(self, request_id: str, token: int) -> None:
        req = self._request(request_id)
        _tokens([token], "token")
        if req.computed < len(req.tokens):
            raise InvalidArgument(f"request {request_id!r} is still prefilling")
        req.tokens.append(token)
        self._extend_hashes(req)

    def _release(self, req: _Req) -> None:
        front: list[int] = []
        for b in reversed(req.blocks):
            self._refs[b] -= 1
            if self._refs[b] == 0:
                if self._hash[b] is None:
                    front.append(b)
                else:
                    self._insert_after(self._prev[TAIL], b)
        for b in reversed(front):
            self._insert_after(HEAD, b)
        req.blocks, req.num_cached = [], 0

    def free(self, request_id: str) -> None:
        self._release(self._request(request_id))
        del self._requests[request_id]

    def preempt(self, request_id: str) -> None:
        req = self._request(request_id)
        self._release(req)
        req.computed = 0

    # --- observers ---------------------------------------------------------------------------------

    def drain_events(self) -> list[KvCacheEvent]:
        events, self._events = self._events, []
        return events

    def free_queue(self) -> list[tuple[int, int | None]]:
        out, b = [], self._next[HEAD]
        while b != TAIL:
            out.append((b, self._hash[b]))
            b = self._next[b]
        return out

    def cached_copies(self) -> list[tuple[int, list[int]]]:
        return [(h, list(c)) for h, c in sorted(self._cached.items())]

    def tables(self) -> list[tuple[str, int, list[int]]]:
        return [(rid, r.computed, list(r.blocks)) for rid, r in sorted(self._requests.items())]

    def refcounts(self) -> list[tuple[int, int]]:
        return [(b, n) for b, n in enumerate(self._refs) if n]

    def held_hashes(self) -> set[int]:
        return set(self._cached)

    def _check(self) -> None:
        queue = [b for b, _ in self.free_queue()]
        assert len(queue) == len(set(queue)) == self._num_free, "free queue is not a chain of distinct blocks"
        assert set(queue) == {b for b in range(1, self.num_blocks) if self._refs[b] == 0}, "queue != unreferenced"
        for h, copies in self._cached.items():
            assert copies and all(self._hash[b] == h for b in copies), f"hash {h} lists a block of another hash"
        uses = [0] * self.num_blocks
        for req in self._requests.values():
            for b in req.blocks:
                uses[b] += 1
        assert uses == self._refs, "reference counts differ from block-table uses"
