"""The G1→G2 offload's shared vocabulary (the mocker's ``kvbm-offload`` feature).

A worker whose GPU pool (G1) evicts a block can copy it to a pinned host pool (G2) instead of
losing it, and copy it back (*swap in*) when a later request needs it.  The router hears about
both tiers: the G1 eviction as a device ``Removed`` at once, the G2 copy as a ``host_pinned``
``Stored`` only once the copy has *arrived*, and a G2 eviction as a ``host_pinned`` ``Removed``.
The values here are shared by the model (``kvspec.model.offload``) and the implementation
(``kvspec.impl.offload``), so each is defined once:

* :class:`TierEvent` — one published event and the tier it is about (the manager's stream mixes
  device and host events under one event-id counter).
* :class:`G2OffloadBlock` — what travels with an offloaded block: its identity (``plh``), its
  sequence hash, the sequence hash of the block before it (the router's parent) and its local hash.
* :class:`SwapInHandle` — a scheduled G2→G1 copy: an id, the blocks, and the tick it completes.
* :class:`SwapInOutcome` — the two answers of a swap-in that schedules nothing: ``NO_HITS`` (no
  leading block is in G2, or G1 has no room) and ``BLOCKED_ON_G1_OFFLOAD`` (making room in G1
  needs an eviction, which is offloaded first; retry once it completes).
* :class:`OffloadConfig` — G2 capacity and the deterministic transfer clock: each link (G1→G2 and
  G2→G1) copies one block per ``*_ticks_per_block`` ticks, one batch after the other.

>>> OffloadConfig(num_g2_blocks=2).offload_ticks_per_block
1
>>> SwapInOutcome.NO_HITS
SwapInOutcome.NO_HITS
"""

from __future__ import annotations

import enum

import attrs

from kvspec.errors import InvalidArgument
from kvspec.events import KvCacheEvent, StorageTier
from kvspec.hashing import Plh

__all__ = ["G2OffloadBlock", "OffloadConfig", "SwapInHandle", "SwapInOutcome", "TierEvent"]


@attrs.frozen
class TierEvent:
    """A published KV event and the storage tier it is about."""

    event: KvCacheEvent
    storage_tier: StorageTier = StorageTier.DEVICE


@attrs.frozen
class G2OffloadBlock:
    """An offloaded block's identity and the metadata its host-tier ``Stored`` will carry."""

    plh: Plh
    seq_hash: int
    parent_hash: int | None
    local_hash: int


@attrs.frozen
class SwapInHandle:
    """A scheduled G2→G1 copy of ``blocks`` (sequence hashes, in order), done at tick ``deadline``."""

    handle_id: int
    blocks: tuple[int, ...] = attrs.field(converter=tuple)
    deadline: int


class SwapInOutcome(enum.Enum):
    """A swap-in that scheduled nothing."""

    NO_HITS = "no_hits"
    BLOCKED_ON_G1_OFFLOAD = "blocked_on_g1_offload"

    def __repr__(self) -> str:
        return f"SwapInOutcome.{self.name}"


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument(f"{name} must be a positive integer, got {value!r}")
    return value


@attrs.frozen
class OffloadConfig:
    """G2 capacity (blocks) and ticks per block on each link (validated: :class:`InvalidArgument`)."""

    num_g2_blocks: int
    offload_ticks_per_block: int = 1
    onboard_ticks_per_block: int = 1

    def __attrs_post_init__(self) -> None:
        _positive("num_g2_blocks", self.num_g2_blocks)
        _positive("offload_ticks_per_block", self.offload_ticks_per_block)
        _positive("onboard_ticks_per_block", self.onboard_ticks_per_block)
