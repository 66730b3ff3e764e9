"""Reference model of vLLM's prefix cache (0.33): ``KVCacheManager`` over ``BlockPool``, one
full-attention KV-cache group, as vLLM's scheduler drives it.

This is a new model, not an extension of :class:`~kvspec.model.NativeBlockPool`: that one names
copies by allocation order and publishes nothing, while a vLLM worker exposes *physical* block ids
(the block table) and a KV-event stream.  The eviction policy is the same family (copies of one
hash, LRU of released cached copies, free capacity before eviction); what is added is the single
free queue that makes physical ids predictable, the request-level admission rule, and the events.

Rules (each stated once):

* **Null block.**  ``num_blocks`` physical blocks ``0..num_blocks-1``; block 0 is the null block,
  taken out at start and never allocated, cached or freed.  The free queue starts as ``1..n-1``.
* **One free queue.**  Allocation pops from the front.  A popped block that still has a hash is
  evicted: its hash entry goes (one ``Removed`` per copy, below).  When a request's blocks are
  released, those whose count drops to zero go back in the order given (a finished request's
  blocks are released *last block first*): unhashed ones to the **front** (reused first), hashed
  ones to the **tail** (LRU).  So never-used and unhashed blocks are always used before any cached
  block is evicted.
* **Copies.**  Every full block a request computes is cached under its hash, even when the hash is
  already cached (vLLM never deduplicates: block tables are append-only), so a hash may have
  several physical copies; lookups use the oldest one still cached (the *primary*).
* **Lookup.**  A waiting request hits the longest cached prefix of its full-block hashes, capped at
  ``num_tokens - 1`` tokens (the last token is always recomputed to get logits).  A hit block
  leaves the free queue silently (no event).  Nothing is changed when the allocation then fails.
* **Allocation** (``allocate_slots``) is atomic: blocks for ``computed + new`` tokens, counting hit
  blocks that sit in the free queue; ``None`` and no change when the free queue is too short.
  Then every newly full block up to ``min(computed + new, num_tokens)`` tokens is cached.
* **Events** (``enable_kv_cache_events``), mode ``per-copy`` (vLLM's behaviour): one
  ``Stored(parent, blocks)`` per ``allocate_slots`` that caches blocks, covering the run of newly
  full blocks, ``parent`` = the hash of the block before the run (``None`` at the start); one
  ``Removed([hash])`` per evicted copy.  With ``report_full`` (vLLM's per-request
  ``kv_cache_report_mode="full"``) a lookup that hits also publishes ``Stored(None, hit blocks)``,
  even if the allocation then fails.  Mode ``per-hash`` is the stream a router needs: a ``Stored``
  names only blocks whose hash had no cached copy (split into runs, each with the preceding
  block's hash as parent), a ``Removed`` only the eviction of a hash's last copy; ``report_full``
  re-announcements are dropped.
* **Hashes.**  kvspec's chained sequence hashes of the blocks' local hashes
  (:mod:`kvspec.hashing`); vLLM's own hashes (sha256 of parent, tokens and extra keys) are
  translated by the adapter.  ``StoredBlock.tokens_hash`` is the block's local hash.

Bad input raises a :mod:`kvspec.errors` error before anything changes.

>>> cache = VllmPrefixCache(4, 2)
>>> cache.add_request("a", [1, 2, 3, 4, 5])
>>> cache.schedule("a")
(0, [1, 2, 3])
>>> [type(e.data).__name__ for e in cache.drain_events()]
['Stored']
>>> cache.free("a"); cache.free_queue()[0]
(3, None)
"""

from __future__ import annotations

from typing import Any

import attrs

from kvspec import checks
from kvspec.errors import InvalidArgument
from kvspec.events import KvCacheEvent, Removed, Stored, StoredBlock
from kvspec.hashing import block_hashes, sequence_hashes

EVENT_MODES = checks.VLLM_EVENT_MODES


_is_int = checks.is_int


check_tokens = checks.vllm_tokens


@attrs.define
class _Request:
    tokens: list[int]
    report_full: bool
    computed: int = 0
    blocks: list[int] = attrs.field(factory=list)
    #: how many of ``blocks`` are cached (vLLM's ``num_cached_block``)
    num_cached: int = 0


class VllmPrefixCache:
    """vLLM 0.33's ``KVCacheManager`` with one full-attention group (see the module rules)."""

    def __init__(self, num_blocks: int, block_size: int, events: str = "per-copy") -> None:
        checks.vllm_cache_options(num_blocks, block_size, events)
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.events = events
        self._free: list[int] = list(range(1, num_blocks))
        self._hash: dict[int, int | None] = {b: None for b in range(1, num_blocks)}
        self._refs: dict[int, int] = {b: 0 for b in range(1, num_blocks)}
        #: hash -> its cached copies, oldest first (element 0 is the primary)
        self._cached: dict[int, list[int]] = {}
        self._requests: dict[str, _Request] = {}
        self._events: list[Any] = []
        self._event_id = 0

    # --- requests ------------------------------------------------------------------------------

    def add_request(self, request_id: str, prompt: list[int], report_full: bool = False) -> None:
        """A new waiting request (vLLM's ``Request``); nothing is allocated yet."""
        prompt = checks.vllm_request(request_id, prompt, report_full)
        if request_id in self._requests:
            raise InvalidArgument(f"request {request_id!r} already exists")
        self._requests[request_id] = _Request(prompt, report_full)

    def schedule(self, request_id: str, num_new_tokens: int | None = None) -> tuple[int, list[int]] | None:
        """One scheduler step: lookup (a waiting request), then ``allocate_slots``.

        ``num_new_tokens`` (default: all not yet computed) is clipped to what is left.  Returns
        ``(hit tokens, newly allocated block ids)``, or ``None`` when the pool cannot hold the step
        (nothing changed, except the ``report_full`` re-announcement of a hit).  On success the
        step's tokens count as computed.
        """
        req = self._request(request_id)
        if num_new_tokens is not None and (not _is_int(num_new_tokens) or num_new_tokens < 1):
            raise InvalidArgument(f"num_new_tokens must be a positive int or None, got {num_new_tokens!r}")
        hashes = self._hashes(req.tokens)
        hits: list[int] = []
        if not req.blocks:
            hits = self._lookup(hashes, len(req.tokens) - 1)
            if hits and req.report_full and self.events == "per-copy":
                self._publish_stored(None, hashes[: len(hits)], req.tokens)
        computed = req.computed + len(hits) * self.block_size
        left = len(req.tokens) - computed
        if left < 1:
            raise InvalidArgument(f"request {request_id!r} has no token to compute (append one first)")
        new = left if num_new_tokens is None else min(num_new_tokens, left)
        need = -(-(computed + new) // self.block_size) - len(req.blocks) - len(hits)
        evictable_hits = len({b for b in hits if self._refs[b] == 0})
        if max(need, 0) + evictable_hits > len(self._free):
            return None
        for b in hits:  # touch: a hit leaves the free queue silently
            if self._refs[b] == 0:
                self._free.remove(b)
            self._refs[b] += 1
        req.blocks.extend(hits)
        if hits:
            req.num_cached = len(hits)
        fresh = self._pop_free(max(need, 0))
        req.blocks.extend(fresh)
        req.computed = computed + new
        self._cache_full_blocks(req, hashes)
        return (len(hits) * self.block_size, fresh)

    def append_token(self, request_id: str, token: int) -> None:
        """The token the last step sampled joins the request (vLLM's ``append_output_token_ids``)."""
        req = self._request(request_id)
        check_tokens([token], "token")
        if req.computed < len(req.tokens):
            raise InvalidArgument(f"request {request_id!r} is still prefilling")
        req.tokens.append(token)

    def free(self, request_id: str) -> None:
        """The request finished or was aborted: release its blocks, last block first."""
        req = self._request(request_id)
        self._release(req)
        del self._requests[request_id]

    def preempt(self, request_id: str) -> None:
        """Preemption: release the blocks, keep the tokens; the next ``schedule`` looks up again."""
        req = self._request(request_id)
        self._release(req)
        req.computed = 0

    # --- observers -------------------------------------------------------------------------------

    def drain_events(self) -> list[KvCacheEvent]:
        """Published events since the last call, oldest first (event ids count from 0)."""
        events, self._events = self._events, []
        return events

    def free_queue(self) -> list[tuple[int, int | None]]:
        """``(block id, hash or None)`` of every free block, next to be allocated first."""
        return [(b, self._hash[b]) for b in self._free]

    def cached_copies(self) -> list[tuple[int, list[int]]]:
        """``(hash, its cached block ids, primary first)`` for every cached hash, by hash."""
        return [(h, list(ids)) for h, ids in sorted(self._cached.items())]

    def tables(self) -> list[tuple[str, int, list[int]]]:
        """``(request id, computed tokens, block table)`` of every request, by id."""
        return [(rid, r.computed, list(r.blocks)) for rid, r in sorted(self._requests.items())]

    def refcounts(self) -> list[tuple[int, int]]:
        """``(block id, reference count)`` of every referenced block."""
        return [(b, n) for b, n in sorted(self._refs.items()) if n]

    def held_hashes(self) -> set[int]:
        """Hashes with at least one cached copy: what a router should see for this worker."""
        return set(self._cached)

    # --- the rules, one helper each ----------------------------------------------------------------

    def _request(self, request_id: Any) -> _Request:
        req = self._requests.get(request_id) if isinstance(request_id, str) else None
        if req is None:
            raise InvalidArgument(f"no request {request_id!r}")
        return req

    def _hashes(self, tokens: list[int]) -> list[int]:
        full = len(tokens) // self.block_size * self.block_size
        return sequence_hashes(block_hashes(tokens[:full], self.block_size)) if full else []

    def _lookup(self, hashes: list[int], max_tokens: int) -> list[int]:
        hits = []
        for h in hashes[: max(max_tokens, 0) // self.block_size]:
            copies = self._cached.get(h)
            if not copies:
                break
            hits.append(copies[0])
        return hits

    def _pop_free(self, n: int) -> list[int]:
        taken, self._free = self._free[:n], self._free[n:]
        for b in taken:
            h = self._hash[b]
            if h is not None:  # eviction of a cached copy
                self._cached[h].remove(b)
                last = not self._cached[h]
                if last:
                    del self._cached[h]
                self._hash[b] = None
                if self.events == "per-copy" or last:
                    self._emit(Removed([h]))
            self._refs[b] = 1
        return taken

    def _cache_full_blocks(self, req: _Request, hashes: list[int]) -> None:
        full = min(req.computed, len(req.tokens)) // self.block_size
        start = req.num_cached
        if full <= start:
            return
        new_first = []
        for i in range(start, full):
            b, h = req.blocks[i], hashes[i]
            new_first.append(h not in self._cached)
            self._hash[b] = h
            self._cached.setdefault(h, []).append(b)
        req.num_cached = full
        parent = hashes[start - 1] if start else None
        if self.events == "per-copy":
            self._publish_stored(parent, hashes[start:full], req.tokens[start * self.block_size:])
            return
        run_start = None  # per-hash: runs of first copies, each under the block before it
        for k, first in enumerate([*new_first, False]):
            if first and run_start is None:
                run_start = k
            elif not first and run_start is not None:
                i = start + run_start
                self._publish_stored(hashes[i - 1] if i else None, hashes[i:start + k],
                                     req.tokens[i * self.block_size:])
                run_start = None

    def _publish_stored(self, parent: int | None, hashes: list[int], tokens: list[int]) -> None:
        locals_ = block_hashes(tokens[: len(hashes) * self.block_size], self.block_size)
        self._emit(Stored(parent, [StoredBlock(h, t) for h, t in zip(hashes, locals_, strict=True)]))

    def _emit(self, data: Any) -> None:
        self._events.append(KvCacheEvent(self._event_id, data))
        self._event_id += 1

    def _release(self, req: _Request) -> None:
        front, back = [], []
        for b in reversed(req.blocks):
            self._refs[b] -= 1
            if self._refs[b] == 0:
                (back if self._hash[b] is not None else front).append(b)
        self._free = front + self._free + back
        req.blocks = []
        req.num_cached = 0
