"""Vocabulary of the KV-event cache-status tracker (``docs/upstream.md`` M7).

The tracker (upstream ``kv_consolidator/tracker.rs``) merges the engine's G1 events (vLLM or
TensorRT-LLM) with KVBM's G2/G3 events into one router stream.  This module holds what the model
and the implementation share: the :class:`EventSource` enum, the tracker's two hashes, the three
events it publishes and the argument checks.

* :class:`EventSource` — ``VLLM | TRTLLM | KVBM``, parsed from the strings upstream accepts.
* Tiers reuse :class:`kvspec.events.StorageTier`.  The tracker's own enum has no ``External``:
  upstream converts the router's ``External`` to ``Disk`` on the way in, so :func:`tracker_tier`
  does the same.
* :func:`local_block_hash` — xxh3-64 over the block's tokens as little-endian u32, seed 1337.  The
  LoRA name does **not** salt it (unlike the router's local hash).
* :func:`sequence_hash` — the local hash for a root block, else ``chain_hash(parent, local)``
  (seed 1337, the router's chain; ``kvspec.hashing.chain_hash``).
* Published events (upstream ``ConsolidatedEvent``): :class:`ConsolidatedStore`,
  :class:`ConsolidatedRemove`, :class:`ConsolidatedClearAll`.  ``source`` is the source's wire
  string (``"vllm"``...), exactly as upstream stores it.

Bad input (decided here, once, for every tracker): anything upstream's Rust types would not let
through — a non-string external hash, a token outside u32, a source that is not an
:class:`EventSource`, a tier that is not a :class:`StorageTier`, a negative block size, a
data-parallel rank outside i32 — raises :class:`kvspec.errors.InvalidArgument` before anything
changes.  Everything upstream accepts stays accepted with upstream's answer, including its
"warn and return ``False``" paths (unknown external hash, source not holding the block), an
unknown parent (hashed as a root), an empty token list and a ``block_size`` that disagrees with
``len(token_ids)`` (upstream never compares them).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from typing import Union

import attrs

from kvspec.errors import InvalidArgument
from kvspec.events import StorageTier
from kvspec.hashing import XXH3_SEED, chain_hash, xxh3

U32 = 2**32
I32_MIN, I32_MAX = -(2**31), 2**31 - 1


class EventSource(enum.Enum):
    """Where an event came from: the engine (vLLM or TensorRT-LLM, G1) or KVBM (G2/G3).

    The tracker counts residency per *source*, not per tier: a block held by vLLM on the GPU and
    by KVBM in host memory is one block with two sources.
    """

    VLLM = "vllm"
    TRTLLM = "trtllm"
    KVBM = "kvbm"

    def __repr__(self) -> str:  # valid Python: EventSource.VLLM
        return f"EventSource.{self.name}"

    def to_str(self) -> str:
        """The wire string upstream puts in the ``source`` field of published events."""
        return self.value

    @classmethod
    def parse(cls, text: str) -> EventSource:
        """Upstream's ``FromStr``: ``vllm|VLLM|GPU``, ``trtllm|TRTLLM|TensorRT-LLM``, ``kvbm|KVBM``."""
        try:
            return _SOURCE_NAMES[text]
        except (KeyError, TypeError):
            raise InvalidArgument(f"Unknown event source: {text!r}") from None


_SOURCE_NAMES = {
    "vllm": EventSource.VLLM,
    "VLLM": EventSource.VLLM,
    "GPU": EventSource.VLLM,
    "trtllm": EventSource.TRTLLM,
    "TRTLLM": EventSource.TRTLLM,
    "TensorRT-LLM": EventSource.TRTLLM,
    "kvbm": EventSource.KVBM,
    "KVBM": EventSource.KVBM,
}

_VLLM_MEDIUM = {StorageTier.DEVICE: "GPU", StorageTier.HOST_PINNED: "CPU_TIER1", StorageTier.DISK: "CPU_TIER2"}


def tracker_tier(tier: StorageTier | None) -> StorageTier | None:
    """The tracker's view of a tier: ``None`` stays ``None``, ``External`` becomes ``Disk``.

    Upstream's tracker enum is ``Device | HostPinned | Disk``; its ``From<RouterStorageTier>``
    maps both ``Disk`` and ``External`` to ``Disk``.
    """
    if tier is None:
        return None
    if not isinstance(tier, StorageTier):
        raise InvalidArgument(f"tier must be a StorageTier or None, got {tier!r}")
    return StorageTier.DISK if tier is StorageTier.EXTERNAL else tier


def tier_from_vllm_medium(medium: str) -> StorageTier | None:
    """vLLM's medium string as a tracker tier (router ``from_kv_medium``, then External -> Disk)."""
    router = {
        "GPU": StorageTier.DEVICE,
        "DEVICE": StorageTier.DEVICE,
        "CPU": StorageTier.HOST_PINNED,
        "CPU_PINNED": StorageTier.HOST_PINNED,
        "CPU_TIER1": StorageTier.HOST_PINNED,
        "CPU_TIER2": StorageTier.DISK,
        "DISK": StorageTier.DISK,
        "NVME": StorageTier.DISK,
        "STORAGE": StorageTier.DISK,
        "EXTERNAL": StorageTier.EXTERNAL,
        "NETWORK": StorageTier.EXTERNAL,
        "REMOTE": StorageTier.EXTERNAL,
        "SHARED": StorageTier.EXTERNAL,
    }.get(medium)
    return tracker_tier(router)


def tier_to_vllm_medium(tier: StorageTier) -> str:
    """The vLLM medium string of a tracker tier: ``GPU``, ``CPU_TIER1`` or ``CPU_TIER2``."""
    return _VLLM_MEDIUM[tracker_tier(tier)]


# --- hashes ---------------------------------------------------------------------------------


def local_block_hash(token_ids: Sequence[int]) -> int:
    """Content hash of one block: xxh3-64 of the tokens as little-endian u32, seed 1337 (no salt)."""
    return xxh3(struct.pack(f"<{len(token_ids)}I", *token_ids), XXH3_SEED)


def sequence_hash(parent_sequence_hash: int | None, local_hash: int) -> int:
    """Position-aware hash: ``local`` at the root, else ``xxh3(le_u64(parent) + le_u64(local), 1337)``."""
    if parent_sequence_hash is None:
        return local_hash
    return chain_hash(parent_sequence_hash, local_hash)


# --- published events -----------------------------------------------------------------------


def _tokens(value) -> tuple[int, ...]:
    return tuple(value)


@attrs.frozen
class ConsolidatedStore:
    """Upstream ``ConsolidatedEvent::Store``: a block to announce to the router.

    Dedup mode: ``block_hash`` is the first source's external hash, ``parent_hash`` the parent's
    first external hash (``None`` when unresolvable) and ``tier`` always ``Device``.  Passthrough
    mode: the input, unchanged.
    """

    block_hash: str
    parent_hash: str | None
    token_ids: tuple[int, ...] = attrs.field(converter=_tokens)
    block_size: int
    lora_name: str | None
    source: str
    tier: StorageTier | None


@attrs.frozen
class ConsolidatedRemove:
    """Upstream ``ConsolidatedEvent::Remove``: a block to withdraw; ``source`` released it last."""

    block_hash: str
    source: str
    tier: StorageTier | None


@attrs.frozen
class ConsolidatedClearAll:
    """Upstream ``ConsolidatedEvent::ClearAll``: every block is gone."""


ConsolidatedEvent = Union[ConsolidatedStore, ConsolidatedRemove, ConsolidatedClearAll]



# --- argument checks (shared, so model and implementation reject exactly the same input) ------


def _check_str(name: str, value, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string{' or None' if optional else ''}, got {value!r}")


def _check_source(source) -> None:
    if not isinstance(source, EventSource):
        raise InvalidArgument(f"source must be an EventSource (use EventSource.parse for strings), got {source!r}")


def check_store_args(block_hash, source, token_ids, parent_hash, block_size, lora_name, tier,
                     data_parallel_rank) -> tuple[tuple[int, ...], StorageTier | None]:
    """Validate ``handle_store`` arguments; return the token tuple and the tracker tier."""
    _check_str("block_hash", block_hash)
    _check_source(source)
    if isinstance(token_ids, (str, bytes)) or not isinstance(token_ids, Sequence):
        raise InvalidArgument(f"token_ids must be a sequence of u32, got {token_ids!r}")
    tokens = tuple(token_ids)
    for t in tokens:
        if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < U32:
            raise InvalidArgument(f"token {t!r} is not a u32")
    _check_str("parent_hash", parent_hash, optional=True)
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 0:
        raise InvalidArgument(f"block_size must be a non-negative integer, got {block_size!r}")
    _check_str("lora_name", lora_name, optional=True)
    normalized = tracker_tier(tier)
    if data_parallel_rank is not None and (
        not isinstance(data_parallel_rank, int) or isinstance(data_parallel_rank, bool)
        or not I32_MIN <= data_parallel_rank <= I32_MAX
    ):
        raise InvalidArgument(f"data_parallel_rank must be an i32 or None, got {data_parallel_rank!r}")
    return tokens, normalized


def check_remove_args(block_hash, source, tier) -> StorageTier | None:
    """Validate ``handle_remove`` arguments; return the tracker tier."""
    _check_str("block_hash", block_hash)
    _check_source(source)
    return tracker_tier(tier)


__all__ = [
    "ConsolidatedClearAll",
    "ConsolidatedEvent",
    "ConsolidatedRemove",
    "ConsolidatedStore",
    "EventSource",
    "check_remove_args",
    "check_store_args",
    "local_block_hash",
    "sequence_hash",
    "tier_from_vllm_medium",
    "tier_to_vllm_medium",
    "tracker_tier",
]
