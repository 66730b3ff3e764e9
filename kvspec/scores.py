"""Result value types of the prefix indexes (``RadixIndex``, ``TieredIndex``).

All are frozen attrs values registered with :mod:`kvspec.codec`, so the state machines compare
them by value and traces record them losslessly.  A worker is always named by the pair
``(worker_id, dp_rank)`` (Dynamo's ``WorkerWithDpRank``): each data-parallel rank owns its blocks.

* :class:`OverlapScores` — device-tier match: ``scores[(worker_id, dp_rank)]`` is the number of
  leading query blocks the worker holds as one root-anchored chain; workers that match nothing are
  absent.  ``frequencies`` is kept for wire compatibility and is always empty (Dynamo 1.6.1 never
  fills it, ``docs/upstream.md`` R4).
* :class:`Continuation` — where a worker's match stopped: ``position`` blocks of the query are
  matched, and the chain ends at the blocks named by ``anchors`` (external hashes; several when a
  worker holds two chains with the same local hashes).  ``position == 0`` means "at the root" and
  then ``anchors == ()``.
* :class:`LowerTierMatches` — one lower tier's answer: ``hits[w]`` blocks matched in this tier
  *beyond* the faster tiers (zero included for every worker that entered the tier), and
  ``next_continuations[w]`` where the next tier resumes.
* :class:`TieredMatches` — ``device`` scores plus one :class:`LowerTierMatches` per allocated
  lower tier.
"""

from __future__ import annotations

from typing import Any

import attrs

from kvspec.events import StorageTier

#: a worker as the indexes see it: ``(worker_id, dp_rank)``
WorkerKey = tuple[int, int]


def _scores(value: Any) -> dict:
    return dict(value)


@attrs.frozen
class OverlapScores:
    """Per-worker device match lengths; ``frequencies`` is always empty (wire compatibility)."""

    scores: dict = attrs.field(converter=_scores, factory=dict)
    frequencies: tuple = attrs.field(converter=tuple, default=())


def _anchors(value: Any) -> tuple:
    return tuple(sorted(value))


@attrs.frozen
class Continuation:
    """A worker's match so far: ``position`` blocks matched, ending at the blocks ``anchors``.

    ``anchors`` is sorted so that equal continuations compare equal however they were built.
    """

    position: int
    anchors: tuple = attrs.field(converter=_anchors, default=())

    @classmethod
    def root(cls) -> Continuation:
        """Nothing matched yet: the walk starts at the root."""
        return cls(0, ())


@attrs.frozen
class LowerTierMatches:
    """One lower tier: extension hits per worker (zeros included) and where the next tier resumes."""

    hits: dict = attrs.field(converter=_scores, factory=dict)
    next_continuations: dict = attrs.field(converter=_scores, factory=dict)


@attrs.frozen
class TieredMatches:
    """Device scores and, for every allocated lower tier, its :class:`LowerTierMatches`."""

    device: OverlapScores
    lower_tier: dict = attrs.field(converter=_scores, factory=dict)


#: the order in which lower tiers continue a match (fastest first), ``docs/upstream.md`` R7.4
LOWER_TIERS = (StorageTier.HOST_PINNED, StorageTier.DISK, StorageTier.EXTERNAL)

__all__ = ["LOWER_TIERS", "Continuation", "LowerTierMatches", "OverlapScores", "TieredMatches", "WorkerKey"]
