"""The approximate (predict-on-route) indexer's shared vocabulary: TTL entries and prune settings.

Without KV events a router still knows where it sent each request, so it *predicts* the cache:
every routing decision stores the request's blocks under the chosen worker, each with an expiry
``now + ttl``.  Expired entries are removed; when the index holds more than ``max_tree_size``
(worker, block) entries it is pruned down to ``floor(max_tree_size * prune_target_ratio)``.
The model (``kvspec.model.approx``) and the implementation (``kvspec.impl.approx``) share the
value types and the validation here, so each rule is written once:

* :class:`TtlEntry` — one (worker, rank, block) timer: the block's external hash, its position
  in the routed sequence (0 = first block) and its expiry tick.
* :func:`pop_order` — the order in which timers leave (expiry and pruning): earliest expiry first;
  among equal expiries the deepest block first, then the larger block hash, then the larger worker
  (Dynamo's max-heap of ``(Reverse(expiry), BlockEntry)``, ``BlockEntry`` ordered by position, key,
  worker).  Ancestors are refreshed with their descendants, so pruning removes leaves before the
  blocks they hang from.
* :class:`PruneConfig` — ``ttl`` (ticks, > 0), ``max_tree_size`` (>= 0) and
  ``prune_target_ratio`` (0..1), validated at the edge with :class:`~kvspec.errors.InvalidArgument`.

Time is an explicit integer clock (ticks; Dynamo uses seconds): nothing reads the wall clock, so
every run is reproducible.  An entry routed at tick ``t`` is present while ``now < t + ttl`` and
gone from ``now == t + ttl`` on.

>>> cfg = PruneConfig(ttl=10, max_tree_size=5, prune_target_ratio=0.4)
>>> cfg.target_size()
2
>>> entries = [TtlEntry(1, 0, 7, 0, 10), TtlEntry(1, 0, 8, 1, 10), TtlEntry(2, 0, 9, 0, 4)]
>>> [e.block_hash for e in sorted(entries, key=pop_order)]
[9, 8, 7]
"""

from __future__ import annotations

import math
import numbers

import attrs

from kvspec.errors import InvalidArgument, InvalidConfiguration

__all__ = ["DEFAULT_MAX_TREE_SIZE", "DEFAULT_PRUNE_TARGET_RATIO", "PruneConfig", "TtlEntry",
           "check_router_config", "pop_order"]

#: Dynamo's ``PruneConfig`` defaults: 2**20 entries, prune down to 80 %.
DEFAULT_MAX_TREE_SIZE = 2**20
DEFAULT_PRUNE_TARGET_RATIO = 0.8


@attrs.frozen
class TtlEntry:
    """One timer: ``(worker_id, dp_rank)`` holds ``block_hash`` at ``position`` until ``expiry``."""

    worker_id: int
    dp_rank: int
    block_hash: int
    position: int
    expiry: int


def pop_order(entry: TtlEntry) -> tuple[int, int, int, int, int]:
    """Sort key of the order timers leave in: earliest expiry, then deepest, larger hash, larger worker."""
    return (entry.expiry, -entry.position, -entry.block_hash, -entry.worker_id, -entry.dp_rank)


def _int_at_least(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise InvalidArgument(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


@attrs.frozen
class PruneConfig:
    """TTL and size bound of an approximate index (validated: :class:`InvalidArgument`)."""

    ttl: int
    max_tree_size: int = DEFAULT_MAX_TREE_SIZE
    prune_target_ratio: float = DEFAULT_PRUNE_TARGET_RATIO

    def __attrs_post_init__(self) -> None:
        _int_at_least("ttl", self.ttl, 1)
        _int_at_least("max_tree_size", self.max_tree_size, 0)
        ratio = self.prune_target_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not (0 <= ratio <= 1) \
                or math.isnan(ratio):
            raise InvalidArgument(f"prune_target_ratio must be a number in [0, 1], got {ratio!r}")

    def target_size(self) -> int:
        """How many entries a prune keeps: ``floor(max_tree_size * prune_target_ratio)``."""
        return int(self.max_tree_size * self.prune_target_ratio)


def check_router_config(use_kv_events: bool, router_predicted_ttl: int | None) -> None:
    """A primary approximate indexer (no KV events) cannot be combined with a side one.

    Dynamo refuses ``router_predicted_ttl_secs`` when ``use_kv_events`` is false: the routing
    decisions would be recorded twice, in the primary and in the side indexer.
    """
    if router_predicted_ttl is not None and not use_kv_events:
        raise InvalidConfiguration("router_predicted_ttl requires use_kv_events=True: a primary approximate "
                                   "indexer cannot be combined with a side approximate indexer")
