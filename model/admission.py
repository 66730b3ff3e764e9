"""The mocker's sequential admission rule: predict, request by request, how much prompt it reuses.

``ai-dynamo-runtime`` 1.6.1 replays a mooncake trace through its mocker
(``dynamo._core.run_mocker_trace_replay``).  With ``replay_concurrency=1`` the requests run one at
a time — each is admitted, prefilled, decoded and released before the next arrives — and the
per-request report (``capture_per_request=True``) gives ``reused_input_tokens``: how many prompt
tokens the admission found in the prefix cache.  :class:`SequentialReplay` predicts those numbers
by driving the reference model of the pool that mocker really uses,
:class:`kvspec.model.NativeBlockPool` (vLLM's native block pool; *not* kvbm-logical — see
``docs/mocker.md`` for how that was established).

**The sequential admission rule** (one request of ``L`` prompt tokens, ``O`` output tokens,
block size ``B``; derived from ``aisimulate-core`` 0.13 sources and checked on replays):

1. *Reject* — vLLM backend: ``ceil(L/B) > num_gpu_blocks``; TRT-LLM (GUARANTEED_NO_EVICT):
   ``L >= num_gpu_blocks * B`` (no room for one output token).  A rejected request reuses and
   generates nothing and changes nothing.  TRT-LLM also *clips* the output so that the whole
   sequence fits the pool: it generates ``min(O, num_gpu_blocks * B - L)`` tokens.
2. *Stall* — vLLM only: the request fits but its decode needs ``ceil((L+O-1)/B)`` blocks, more
   than the pool; the mocker aborts the whole replay ("effect-free zero-duration pass"), so
   :meth:`SequentialReplay.submit` raises :class:`~kvspec.errors.ReplayStalled` (nothing changed).
3. *Reuse* — the prompt's full blocks are identified by the chained hash of their trace
   ``hash_ids``.  The cache may serve at most ``floor((L-1)/B)`` of them on vLLM (vLLM's
   "at least one prompt token is computed" rule: an identical 64-token prompt reuses 48, not 64)
   and all ``floor(L/B)`` on TRT-LLM; the hit is the longest resident prefix under that cap.
   ``reused = hits * B``.  With prefix caching off it is always 0.
4. *Allocate* — the hits are referenced (leaving the LRU list), the other ``ceil(L/B) - hits``
   prompt blocks are fresh copies, evicting the oldest inactive copies only when free capacity
   runs out.  Every full prompt block not reused is then cached — also when its hash is already
   resident (a duplicate copy: the repeated prompt's last block).
5. *Decode* — the KV of the last output token is never computed, so the request ends holding
   ``ceil((L+O-1)/B)`` blocks; each block completed by output tokens is cached under a hash that
   no later prompt can match (the mocker's output tokens are not in the trace).  The trailing
   partial block stays private.
6. *Release* — at completion the blocks are released leaf first (reverse order), so a request's
   deepest blocks are the oldest LRU entries and are evicted before its prefix.

The prediction of request ``k`` depends only on requests ``0..k``, which is what lets the
differential machine (``kvspec.stateful.machines.mocker``) compare one request per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from kvspec.errors import InvalidArgument, PoolExhausted, ReplayStalled
from kvspec.hashing import chain_hash, sequence_hashes
from kvspec.model.native_pool import NativeBlockPool
from kvspec.mooncake import MooncakeRow, validate_row

__all__ = ["BACKENDS", "COMPLETED", "NOT_MODELLED", "REJECTED", "Outcome", "SequentialReplay", "predict"]

#: Backends of the 1.6.1 mocker that kvspec models, with their reuse cap and rejection rule.
BACKENDS = ("vllm", "trtllm")

#: What the 1.6.1 mocker offers that kvspec does not model, and why.
NOT_MODELLED = {
    "sglang": "RadixCache: node-granular LRU keyed by wall-clock Instant (ties by slot id), "
    "a different policy family; it also aborts some sequential replays (docs/findings.md)",
    "belady": "kv_eviction_policy=belady exists in aisimulate-core 0.13 but the 1.6.1 binding "
    "rejects the field, and it requires open-loop traffic (no replay_concurrency)",
}

COMPLETED = "completed"
REJECTED = "rejected"

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: Seed of the synthetic hashes of output blocks (never equal to a prompt block's hash).
_OUTPUT_ROOT = 0x6F75747075740000  # b"output\0\0"


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class SequentialReplay:
    """One mocker worker replaying requests one at a time (``replay_concurrency=1``).

    ``submit`` plays one request to completion and returns ``(status, reused_input_tokens,
    output_length)``: ``status`` is ``"completed"`` or ``"rejected"``, ``output_length`` the
    tokens actually generated (TRT-LLM clips them; 0 when rejected).  The engine block size and the log's
    block size are the same ``block_size``.  ``pool`` is the block pool the rule drives: by default
    the reference :class:`~kvspec.model.native_pool.NativeBlockPool` of ``num_gpu_blocks`` copies;
    any object with its interface (``kvspec.impl``'s, an engine's) may be passed instead.
    """

    def __init__(
        self,
        num_gpu_blocks: int,
        block_size: int = 16,
        backend: str = "vllm",
        enable_prefix_caching: bool = True,
        *,
        pool: Any = None,
    ) -> None:
        if backend not in BACKENDS:
            reason = NOT_MODELLED.get(backend, "unknown backend")
            raise InvalidArgument(f"backend {backend!r} is not modelled: {reason}")
        if not _is_int(block_size) or block_size < 1:
            raise InvalidArgument(f"block_size must be a positive int, got {block_size!r}")
        if not isinstance(enable_prefix_caching, bool):
            raise InvalidArgument("enable_prefix_caching must be a bool")
        self.block_size = block_size
        self.backend = backend
        self.enable_prefix_caching = enable_prefix_caching
        self.pool = NativeBlockPool(num_gpu_blocks) if pool is None else pool
        self.num_gpu_blocks = num_gpu_blocks
        self.requests = 0

    # --- the admission rule, one function per clause -----------------------------------------

    def rejects(self, input_length: int, output_length: int) -> bool:
        """Clause 1: the scheduler refuses a request that can never fit."""
        if self.backend == "trtllm":
            return input_length >= self.num_gpu_blocks * self.block_size
        return _ceil_div(input_length, self.block_size) > self.num_gpu_blocks

    def generated(self, input_length: int, output_length: int) -> int:
        """Clause 1: output tokens actually produced; TRT-LLM clips the sequence to the pool."""
        if self.backend == "trtllm":
            return min(output_length, self.num_gpu_blocks * self.block_size - input_length)
        return output_length

    def final_blocks(self, input_length: int, output_length: int) -> int:
        """Clause 5: blocks held at completion; the last output token's KV is never computed."""
        return _ceil_div(input_length + output_length - 1, self.block_size)

    def reuse_cap(self, input_length: int) -> int:
        """Clause 3: how many full prompt blocks the cache may serve."""
        if not self.enable_prefix_caching:
            return 0
        if self.backend == "trtllm":
            return input_length // self.block_size
        return (input_length - 1) // self.block_size

    # --- one request ---------------------------------------------------------------------------

    def submit(self, input_length: int, output_length: int, hash_ids: Sequence[int]) -> tuple[str, int, int]:
        """Play one request to completion; return ``(status, reused prompt tokens, generated)``."""
        hash_ids = validate_row(input_length, output_length, hash_ids, self.block_size)
        if self.rejects(input_length, output_length):
            return (REJECTED, 0, 0)
        output_length = self.generated(input_length, output_length)
        bs = self.block_size
        total_blocks = self.final_blocks(input_length, output_length)
        if total_blocks > self.num_gpu_blocks:
            raise ReplayStalled(
                f"request needs {total_blocks} blocks by its last token; the pool has {self.num_gpu_blocks}"
            )
        request = self.requests
        self.requests += 1
        prompt_blocks = _ceil_div(input_length, bs)
        full_prompt = input_length // bs
        hashes = sequence_hashes(hash_ids[:full_prompt])

        hits = self.pool.longest_prefix(hashes[: self.reuse_cap(input_length)])
        try:
            copies = self.pool.acquire(hashes[:hits], prompt_blocks - hits)
            if self.enable_prefix_caching:
                for position in range(hits, full_prompt):
                    self.pool.cache(copies[position], hashes[position])
            copies += self.pool.acquire([], total_blocks - prompt_blocks)
        except PoolExhausted as exc:  # pragma: no cover - impossible: the request runs alone
            raise AssertionError(f"a lone request could not allocate: {exc}") from exc
        if self.enable_prefix_caching:
            completed = (input_length + output_length - 1) // bs
            for position in range(full_prompt, completed):
                self.pool.cache(copies[position], chain_hash(_OUTPUT_ROOT + request, position))
        for copy_id in reversed(copies):
            self.pool.release(copy_id)
        self.pool.drain_removed()
        return (COMPLETED, hits * bs, output_length)

    # --- observers -----------------------------------------------------------------------------

    def pool_state(self) -> tuple[list[Any], list[Any]]:
        """Resident copies and the LRU order (for model-vs-impl checks; the mocker hides these)."""
        return (self.pool.copies(), self.pool.inactive_order())


@attrs.frozen
class Outcome:
    """kvspec's prediction for one trace row."""

    status: str
    reused_input_tokens: int
    output_length: int


def predict(
    rows: Sequence[MooncakeRow],
    num_gpu_blocks: int,
    *,
    block_size: int = 16,
    backend: str = "vllm",
    enable_prefix_caching: bool = True,
    pool: Any = None,
) -> list[Outcome]:
    """Predict every row of a sequential replay.  Raises :class:`ReplayStalled` naming the row
    at which the real mocker would abort the whole replay."""
    replay = SequentialReplay(num_gpu_blocks, block_size, backend, enable_prefix_caching, pool=pool)
    outcomes = []
    for index, row in enumerate(rows):
        try:
            status, reused, generated = replay.submit(row.input_length, row.output_length, row.hash_ids)
        except ReplayStalled as exc:
            raise ReplayStalled(f"row {index}: {exc}") from None
        outcomes.append(Outcome(status, reused, generated))
    return outcomes
