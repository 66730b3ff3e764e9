"""Sequential replay: predict, request by request, how much prompt Dynamo's mocker reuses.

``ai-dynamo-runtime`` 1.6.1 replays a mooncake trace through its mocker
(``dynamo._core.run_mocker_trace_replay``).  With ``replay_concurrency=1`` the requests run one at
a time — each is admitted, prefilled, decoded and released before the next arrives — and the
per-request report (``capture_per_request=True``) gives ``reused_input_tokens``: how many prompt
tokens the admission found in the prefix cache.  :class:`SequentialReplay` predicts those numbers
by driving the reference model of the pool that mocker really uses,
:class:`kvspec.model.NativeBlockPool` (vLLM's native block pool; *not* kvbm-logical — see
``docs/replay.md`` for how that was established).

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

import importlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from kvspec.errors import InvalidArgument, PoolExhausted, ReplayStalled, TraceError
from kvspec.hashing import chain_hash, sequence_hashes

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

#: Seed of the synthetic hashes of output blocks (never equal to a prompt block's hash).
_OUTPUT_ROOT = 0x6F75747075740000  # b"output\0\0"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@attrs.frozen
class TraceRow:
    """One mooncake trace row: prompt length, output length, one hash id per trace block."""

    input_length: int
    output_length: int
    hash_ids: tuple[int, ...] = attrs.field(converter=tuple)
    timestamp: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp,
            "input_length": self.input_length,
            "output_length": self.output_length,
            "hash_ids": list(self.hash_ids),
        }


def validate_row(input_length: Any, output_length: Any, hash_ids: Any, block_size: int) -> tuple[int, ...]:
    """Check one row the way the mocker's trace loader does; return ``hash_ids`` as a tuple."""
    if not _is_int(input_length) or input_length < 1:
        raise InvalidArgument(f"input_length must be a positive int, got {input_length!r}")
    if not _is_int(output_length) or output_length < 1:
        raise InvalidArgument(f"output_length must be a positive int, got {output_length!r}")
    if not isinstance(hash_ids, (list, tuple)) or not hash_ids:
        raise InvalidArgument(f"hash_ids must be a non-empty list, got {hash_ids!r}")
    if not all(_is_int(h) and 0 <= h < 2**64 for h in hash_ids):
        raise InvalidArgument(f"hash_ids must be u64 ints, got {hash_ids!r}")
    if input_length > len(hash_ids) * block_size:
        raise TraceError(
            f"input_length {input_length} exceeds hash_ids capacity {len(hash_ids) * block_size}"
        )
    return tuple(hash_ids)


def parse_mooncake(lines: Iterable[str]) -> list[TraceRow]:
    """Rows of a mooncake JSONL trace (blank lines skipped); :class:`TraceError` on bad input."""
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            rows.append(
                TraceRow(
                    int(obj["input_length"]),
                    int(obj["output_length"]),
                    tuple(int(h) for h in obj["hash_ids"]),
                    float(obj.get("timestamp", 0.0)),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise TraceError(f"trace line {number}: {exc}") from None
    return rows


def load_mooncake(path: str | Path) -> list[TraceRow]:
    return parse_mooncake(Path(path).read_text().splitlines())


def dump_mooncake(rows: Sequence[TraceRow]) -> str:
    return "".join(json.dumps(row.to_json()) + "\n" for row in rows)


def _pool_class(namespace: str) -> type:
    if namespace not in ("model", "impl"):
        raise InvalidArgument(f"namespace must be 'model' or 'impl', got {namespace!r}")
    return importlib.import_module(f"kvspec.{namespace}").NativeBlockPool


class SequentialReplay:
    """One mocker worker replaying requests one at a time (``replay_concurrency=1``).

    ``submit`` plays one request to completion and returns ``(status, reused_input_tokens,
    output_length)``: ``status`` is ``"completed"`` or ``"rejected"``, ``output_length`` the
    tokens actually generated (TRT-LLM clips them; 0 when rejected).  The engine block size and the trace
    block size are the same ``block_size``.  ``namespace`` picks the pool: ``"model"`` (the
    reference) or ``"impl"``.
    """

    def __init__(
        self,
        num_gpu_blocks: int,
        block_size: int = 16,
        backend: str = "vllm",
        enable_prefix_caching: bool = True,
        namespace: str = "model",
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
        self.pool = _pool_class(namespace)(num_gpu_blocks)
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
    rows: Sequence[TraceRow],
    num_gpu_blocks: int,
    *,
    block_size: int = 16,
    backend: str = "vllm",
    enable_prefix_caching: bool = True,
    namespace: str = "model",
) -> list[Outcome]:
    """Predict every row of a sequential replay.  Raises :class:`ReplayStalled` naming the row
    at which the real mocker would abort the whole replay."""
    replay = SequentialReplay(num_gpu_blocks, block_size, backend, enable_prefix_caching, namespace)
    outcomes = []
    for index, row in enumerate(rows):
        try:
            status, reused, generated = replay.submit(row.input_length, row.output_length, row.hash_ids)
        except ReplayStalled as exc:
            raise ReplayStalled(f"row {index}: {exc}") from None
        outcomes.append(Outcome(status, reused, generated))
    return outcomes
