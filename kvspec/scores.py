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

from kvspec import checks
from kvspec.errors import InvalidArgument
from kvspec.events import StorageTier

__all__ = ["LOWER_TIERS", "Continuation", "LowerTierMatches", "OverlapScores", "TieredMatches", "WorkerKey"]

#: a worker as the indexes see it: ``(worker_id, dp_rank)``
WorkerKey = tuple[int, int]


def _worker(name: str, value: Any) -> tuple[int, int]:
    """A worker key: the pair ``(worker_id u64, dp_rank u32)``."""
    if type(value) is not tuple or len(value) != 2:
        raise InvalidArgument(f"{name} must be a (worker_id, dp_rank) pair, got {value!r}")
    checks.worker_id(f"{name}.worker_id", value[0])
    checks.dp_rank(f"{name}.dp_rank", value[1])
    return value


def _mapping(key_rule, value_rule):
    """attrs converter: a dict whose keys and values pass the rules (InvalidArgument otherwise)."""

    def convert(value: Any) -> dict:
        if not isinstance(value, dict):
            raise InvalidArgument(f"expected a dict, got {type(value).__name__}")
        for key, item in value.items():
            key_rule("key", key)
            value_rule(f"[{key!r}]", item)
        return dict(value)

    return convert


_scores = _mapping(_worker, checks.count)


@attrs.frozen
class OverlapScores:
    """Per-worker device match lengths; ``frequencies`` is always empty (wire compatibility)."""

    scores: dict = attrs.field(converter=_scores, factory=dict)
    frequencies: tuple = attrs.field(default=(), validator=checks.attrs_rule(checks.exact(tuple)))


def _anchors(value: Any) -> tuple:
    if isinstance(value, (set, frozenset)):
        value = tuple(value)
    return tuple(sorted(checks.sequence("anchors", value, checks.u64)))


@attrs.frozen
class Continuation:
    """A worker's match so far: ``position`` blocks matched, ending at the blocks ``anchors``.

    ``anchors`` is sorted so that equal continuations compare equal however they were built.
    """

    position: int = attrs.field(validator=checks.attrs_rule(checks.count))
    anchors: tuple = attrs.field(converter=_anchors, default=())

    @classmethod
    def root(cls) -> Continuation:
        """Nothing matched yet: the walk starts at the root."""
        return cls(0, ())


@attrs.frozen
class LowerTierMatches:
    """One lower tier: extension hits per worker (zeros included) and where the next tier resumes."""

    hits: dict = attrs.field(converter=_scores, factory=dict)
    next_continuations: dict = attrs.field(converter=_mapping(_worker, checks.exact(Continuation)), factory=dict)


@attrs.frozen
class TieredMatches:
    """Device scores and, for every allocated lower tier, its :class:`LowerTierMatches`."""

    device: OverlapScores = attrs.field(validator=checks.attrs_rule(checks.exact(OverlapScores)))
    lower_tier: dict = attrs.field(
        converter=_mapping(lambda n, v: checks.exact(StorageTier)(n, v), checks.exact(LowerTierMatches)), factory=dict)


#: the order in which lower tiers continue a match (fastest first), ``docs/upstream.md`` R7.4
LOWER_TIERS = (StorageTier.HOST_PINNED, StorageTier.DISK, StorageTier.EXTERNAL)
