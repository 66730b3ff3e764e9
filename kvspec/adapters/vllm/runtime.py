"""vLLM's runtime pieces, as its scheduler sets them up, and translation into kvspec's vocabulary.

* :func:`manager` builds the ``KVCacheManager`` vLLM's scheduler builds for a model with one
  full-attention KV-cache group: a one-group ``KVCacheConfig`` of ``FullAttentionSpec``,
  ``hash_block_size == block_size``, prefix caching and ``enable_kv_cache_events`` on.
* :func:`request` builds a real ``vllm.v1.request.Request`` with the block hasher the engine core
  installs (``get_request_block_hasher`` over the default ``sha256`` and ``init_none_hash``).
* :class:`HashNames` translates vLLM's block hashes (bytes; low 64 bits big-endian on the wire,
  ``VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES``) into kvspec's chained sequence hashes of the same tokens,
  so the model and the engine can be compared event by event.  Names are learnt from the requests
  themselves (their ``block_hashes`` next to kvspec's hashes of the same token prefix).
* :func:`kvspec_event` turns one of vLLM's ``BlockStored`` / ``BlockRemoved`` / ``AllBlocksCleared``
  into kvspec's event data (``Stored`` / ``Removed`` / ``Cleared``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kvspec.adapters._engine import Engine
from kvspec.events import Cleared, Removed, Stored, StoredBlock
from kvspec.hashing import block_hashes, sequence_hashes

__all__ = ["ENGINE", "HashNames", "external", "kvspec_event", "manager", "request"]

ENGINE = Engine("vllm", (
    "torch",
    "vllm.v1.core.kv_cache_manager",
    "vllm.v1.core.kv_cache_utils",
    "vllm.v1.core.block_pool",
    "vllm.v1.kv_cache_interface",
    "vllm.v1.request",
    "vllm.sampling_params",
    "vllm.distributed.kv_events",
    "vllm.utils.hashing",
))

HASH_ALGO = "sha256"  # vLLM's default prefix_caching_hash_algo
_hasher_cache: dict[int, Any] = {}


def _m(name: str) -> Any:
    return ENGINE.load()[name]


def _init_hashing() -> Any:
    utils = _m("vllm.v1.core.kv_cache_utils")
    fn = _m("vllm.utils.hashing").get_hash_fn_by_name(HASH_ALGO)
    if getattr(utils, "NONE_HASH", None) is None:
        utils.init_none_hash(fn)
    return fn


def manager(num_blocks: int, block_size: int, *, caching: bool = True, max_model_len: int = 1 << 16) -> Any:
    """The ``KVCacheManager`` of a one-group full-attention model with ``num_blocks`` blocks."""
    _init_hashing()
    torch = _m("torch")
    iface = _m("vllm.v1.kv_cache_interface")
    spec = iface.FullAttentionSpec(block_size=block_size, num_kv_heads=1, head_size=1, dtype=torch.float32)
    config = iface.KVCacheConfig(num_blocks=num_blocks, kv_cache_tensors=[],
                                 kv_cache_groups=[iface.KVCacheGroupSpec(["layers.0.attn"], spec)])
    return _m("vllm.v1.core.kv_cache_manager").KVCacheManager(
        config, max_model_len=max_model_len, scheduler_block_size=block_size, hash_block_size=block_size,
        enable_caching=caching, enable_kv_cache_events=True)


def request(request_id: str, prompt: Sequence[int], block_size: int, *, report_full: bool = False) -> Any:
    """A real ``Request`` with the engine's block hasher; ``report_full`` sets
    ``kv_cache_report_mode="full"`` (what a client's ``vllm_xargs`` sets through the OpenAI server)."""
    fn = _init_hashing()
    hasher = _hasher_cache.get(block_size)
    if hasher is None:
        hasher = _hasher_cache[block_size] = _m("vllm.v1.core.kv_cache_utils").get_request_block_hasher(block_size, fn)
    params = _m("vllm.sampling_params").SamplingParams(max_tokens=1 << 20)
    req = _m("vllm.v1.request").Request(request_id, list(prompt), params, None, block_hasher=hasher)
    if report_full:
        req.kv_cache_report_mode = "full"
    return req


def external(block_hash: Any) -> int:
    """vLLM's hash as it goes on the wire: bytes -> low 64 bits (big-endian); ints unchanged.

    Accepts a ``BlockHashWithGroupId`` too (the group id is the trailing 4 bytes; stripped)."""
    if isinstance(block_hash, int):
        return block_hash
    utils = _m("vllm.v1.core.kv_cache_utils")
    raw = bytes(block_hash)
    if len(raw) != 32:  # BlockHashWithGroupId
        raw = bytes(utils.get_block_hash(block_hash))
    return int.from_bytes(raw, "big") & ((1 << 64) - 1)


class HashNames:
    """vLLM external hash -> kvspec sequence hash, learnt from requests' tokens."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self.names: dict[int, int] = {}

    def learn(self, req: Any) -> None:
        tokens = list(req.all_token_ids)
        full = len(req.block_hashes)
        ours = sequence_hashes(block_hashes(tokens[: full * self.block_size], self.block_size)) if full else []
        for theirs, mine in zip(req.block_hashes, ours, strict=True):
            key = external(theirs)
            known = self.names.setdefault(key, mine)
            if known != mine:  # pragma: no cover - a 64-bit collision of two token paths
                raise AssertionError(f"vLLM hash {key:#x} names two kvspec blocks {known:#x} and {mine:#x}")

    def __call__(self, block_hash: Any) -> int:
        key = external(block_hash)
        return self.names.get(key, key)


def kvspec_event(event: Any, names: HashNames, block_size: int) -> Any:
    """kvspec's ``Stored`` / ``Removed`` / ``Cleared`` for one vLLM ``KVCacheEvent``."""
    kind = type(event).__name__
    if kind == "BlockStored":
        parent = None if event.parent_block_hash is None else names(event.parent_block_hash)
        locals_ = block_hashes(list(event.token_ids), event.block_size)
        return Stored(parent, [StoredBlock(names(h), t) for h, t in zip(event.block_hashes, locals_, strict=True)])
    if kind == "BlockRemoved":
        return Removed([names(h) for h in event.block_hashes])
    if kind == "AllBlocksCleared":
        return Cleared()
    raise TypeError(f"unknown vLLM KV event {kind}")
